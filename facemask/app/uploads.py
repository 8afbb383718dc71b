"""What the web app accepts as input: files Gradio stored from an upload, and data URLs.

Gradio hands a request's file record to the app as a path, and a record sent without its "meta"
field skips Gradio's own check that the file was uploaded; a record whose path is an http(s) URL
makes Gradio download it (DNS look-up included) before the app sees anything. So the app checks
every path itself, by its text alone (nothing on disk is touched: no stat, no open), and
`RequestGuard`, an ASGI middleware in front of Gradio, refuses URL paths, paths outside the
upload folders and oversized request bodies before Gradio reads them. Refusals say one fixed
sentence that tells nothing about the path: whether it exists, its type or its size.

Memory: a request waiting in Gradio's queue keeps its whole body, and a pasted image is a data URL
of up to 67 MB of base64. So RequestGuard holds at most `BODY_BUDGET_BODIES` largest bodies at once
(the others wait, unread, in the socket), writes a large data URL to a file in the upload folder
(as an upload would be) and hands Gradio a path instead, and refuses any other large body: what
waits in the queue is then a few kB. `CacheSweeper` removes, on a schedule, every file in the
app's cache older than an hour, including what Gradio stored and then forgot (an upload refused
for its name).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

from gradio.utils import get_upload_folder

from facemask.images import ImageError

REFUSED = "Refused: this app only reads files uploaded to it. Upload the file again."
BODY_TOO_LARGE = "The request is over the size limit of this app."
DATA_URL_NAME = "the pasted image"  # also the name of the file a large data URL is written to
MB = 1024 * 1024
# Bodies (and data URLs) from this size are held within the budget (and written to a file); webcam
# frames, a few tens of kB, never wait behind a large paste.
LARGE = MB
BODY_BUDGET_BODIES = 2  # largest bodies held at once; each costs about three times its size while checked
BODY_SECONDS = 120  # for a request body to arrive: 67 MB at 4.5 Mbit/s
BODY_TOO_SLOW = "The request took too long to arrive."


def upload_roots() -> tuple[str, ...]:
    """The folder Gradio stores uploads in (GRADIO_TEMP_DIR, or <system temp>/gradio), as set and as resolved.

    Only this folder is resolved: it is the app's own, not the caller's path.
    """
    folder = os.path.normpath(os.path.abspath(get_upload_folder()))
    return tuple(dict.fromkeys((folder, os.path.realpath(folder))))


def is_uploaded(path: object, roots: tuple[str, ...] | None = None) -> bool:
    """Whether `path` names a file inside an upload folder, judged by its text alone.

    Absolute, no "." or ".." part, no NUL, strictly below a root. Gradio writes uploads there
    under content-hash folders, so a caller cannot plant a symbolic link inside.
    """
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        return False
    if any(part in (".", "..") for part in path.split("/")):
        return False
    normal = os.path.normpath(path)
    return any(normal.startswith(root.rstrip("/") + "/") for root in roots or upload_roots())


def data_url_bytes(url: str, max_bytes: int) -> bytes:
    """The bytes of a base64 `data:` URL, refused by their size before they are decoded."""
    header, comma, payload = url.partition(",")
    if not comma or not header.startswith("data:") or not header.endswith(";base64"):
        raise ImageError(f"{DATA_URL_NAME}: not a base64 data URL")
    size = len(payload) * 3 // 4 - payload[-2:].count("=")
    if size > max_bytes:
        raise ImageError(f"{DATA_URL_NAME}: {size / MB:.1f} MB is over the {max_bytes / MB:g} MB limit")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ImageError(f"{DATA_URL_NAME}: not valid base64 ({error})") from error


def max_body_bytes(max_upload_bytes: int) -> int:
    """A request body big enough for a data URL of the largest upload (base64 adds a third) and its JSON."""
    return max_upload_bytes * 4 // 3 + MB


def file_paths(value: object) -> Iterator[object]:
    """The "path" of every file record (a dict with that key) anywhere in decoded JSON."""
    return (record["path"] for record in file_records(value) if "path" in record)


def body_problem(value: object) -> str | None:
    """REFUSED when decoded JSON carries a file record whose path is not an upload (URLs included)."""
    roots = upload_roots()  # resolved once per body, not once per path
    paths = (path for path in file_paths(value) if path is not None)
    return REFUSED if any(not is_uploaded(path, roots) for path in paths) else None


Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class RequestGuard:
    """ASGI middleware: caps request bodies, bounds the bytes held for them, refuses file records that
    are not uploads, and turns large data URLs into files.

    Uploads themselves (multipart, to .../upload) pass through: Gradio caps them with max_file_size and
    streams them to disk. Every other POST is read here in full, up to `max_body` bytes, checked
    (`checked_body`), and handed on; one of LARGE bytes or more first waits for its share of a budget
    of BODY_BUDGET_BODIES bodies of `max_body`, held until Gradio has taken it.
    """

    def __init__(self, app, max_body: int, max_upload: int | None = None):
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload if max_upload is not None else max_body
        self.budget = ByteBudget(BODY_BUDGET_BODIES * max_body)

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/").endswith("/upload"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await respond(send, 413, BODY_TOO_LARGE)
            return
        size = int(declared) if declared is not None else self.max_body  # chunked: as large as allowed
        async with self.budget.hold(size if size >= LARGE else 0):
            await self.handle(scope, receive, send)

    async def handle(self, scope: dict, receive: Receive, send: Send) -> None:
        try:  # a client trickling a large body would keep its share of the budget: it gets BODY_SECONDS
            body = await asyncio.wait_for(read_body(receive, self.max_body), BODY_SECONDS)
        except asyncio.TimeoutError:
            await respond(send, 408, BODY_TOO_SLOW)
            return
        if body is None:  # the client went away
            return
        if len(body) > self.max_body:
            await respond(send, 413, BODY_TOO_LARGE)
            return
        if len(body) >= LARGE:  # parsing, decoding and writing take a while: not on the server's event loop
            status, result = await asyncio.to_thread(checked_body, body, self.max_upload)
        else:
            status, result = checked_body(body, self.max_upload)
        if status != 200:
            await respond(send, status, result.decode())
            return
        del body
        await self.app(scope, replay(result, receive), send)


async def read_body(receive: Receive, max_body: int) -> bytes | None:
    """The request's body, None if the client disconnects; reading stops a byte over `max_body`."""
    body = bytearray()
    while True:  # a body sent in chunks without a length is counted as it comes
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > max_body or not message.get("more_body", False):
            return bytes(body)


class ByteBudget:
    """At most `total` bytes of request bodies held at once; a request waits for its share, unread."""

    def __init__(self, total: int):
        self.total, self.used = total, 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.total)
        if size <= 0:
            yield
            return
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + size <= self.total)
            self.used += size
        try:
            yield
        finally:
            async with self._changed:
                self.used -= size
                self._changed.notify_all()


def checked_body(body: bytes, max_upload: int) -> tuple[int, bytes]:
    """(200, the body to hand on) or (an HTTP status, the refusal) for a POST body, JSON or not.

    A file record whose path is not an upload is REFUSED (400). A data URL of LARGE bytes or more is
    written to a file of the upload folder and its record made an uploaded file's; a bad or oversized
    one is refused (400, as the app would word it), and a body still large after that (413): nothing
    but a pasted file has a reason to be large, and a large body would wait in the queue whole.
    """
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return 200, body  # not JSON: Gradio refuses it on its own, and there is no path in it to follow
    if body_problem(value):
        return 400, REFUSED.encode()
    if len(body) < LARGE:
        return 200, body
    try:
        spooled = spool_data_urls(value, max_upload)
    except ImageError as error:
        return 400, str(error).encode()
    smaller = json.dumps(value).encode() if spooled else body
    return (413, BODY_TOO_LARGE.encode()) if len(smaller) >= LARGE else (200, smaller)


def spool_data_urls(value: object, max_upload: int) -> int:
    """Write every data URL of LARGE bytes or more in decoded JSON to its own file in the upload folder, in
    place of it a record of that file (as Gradio makes for an upload); how many. ImageError if one is bad."""
    count = 0
    for record in file_records(value):
        url = record.get("url")
        if isinstance(url, str) and url.startswith("data:") and len(url) >= LARGE:
            data = data_url_bytes(url, max_upload)
            folder = Path(upload_roots()[0]) / uuid.uuid4().hex
            folder.mkdir(parents=True)
            path = folder / DATA_URL_NAME
            path.write_bytes(data)
            record.clear()
            record.update(path=str(path), url=None, orig_name=DATA_URL_NAME, size=len(data),
                          meta={"_type": "gradio.FileData"})
            count += 1
    return count


def is_pasted(path: str | Path) -> bool:
    """Whether an uploaded path is a data URL RequestGuard wrote to a file (used once, then removed)."""
    return Path(path).name == DATA_URL_NAME


def file_records(value: object) -> Iterator[dict]:
    """Every dict with a "url" or "path" key anywhere in decoded JSON, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "url" in item or "path" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that gives the body already read, then whatever the client sends next (a disconnect)."""
    given = False

    async def replayed() -> dict:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def respond(send: Send, status: int, message: str) -> None:
    """A JSON error in FastAPI's shape, {"detail": ...}, as Gradio's own refusals are."""
    payload = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def sweep_cache(root: str | Path, max_age: float) -> None:
    """Delete every file under `root` last changed over `max_age` seconds ago, then the folders left
    empty: what Gradio tracks and what it forgot (a refused upload's bytes) alike. An empty folder
    nothing was deleted from goes only once as old (Gradio makes one just before it moves a file in)."""
    limit = time.time() - max_age
    emptied = set()
    for folder, names, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if os.lstat(path).st_mtime < limit:
                    os.unlink(path)
                    emptied.add(folder)
        for name in names:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):  # rmdir refuses a folder that is not empty
                if path in emptied or os.lstat(path).st_mtime < limit:
                    os.rmdir(path)
                    emptied.add(folder)


class CacheSweeper:
    """`sweep_cache(root, max_age)` every `every` seconds in a daemon thread, until `stop()` (or the end
    of a `with` block)."""

    def __init__(self, root: str | Path, every: float, max_age: float):
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(root, every, max_age), daemon=True,
                                        name="cache-sweeper")
        self._thread.start()

    def _run(self, root: str | Path, every: float, max_age: float) -> None:
        while not self._stopped.wait(every):
            sweep_cache(root, max_age)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def __enter__(self) -> CacheSweeper:
        return self

    def __exit__(self, *exception: object) -> None:
        self.stop()
