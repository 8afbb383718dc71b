"""What the web app accepts as input: files Gradio stored from an upload, and small data URLs.

Gradio hands a request's file record to the app as a path, and a record sent without its "meta"
field skips Gradio's own check that the file was uploaded; a record whose path is an http(s) URL
makes Gradio download it (DNS look-up included) before the app sees anything. So the app checks
every path itself, by its text alone (nothing on disk is touched: no stat, no open), and
`RequestGuard`, an ASGI middleware in front of Gradio, refuses URL paths, paths outside the
upload folders and oversized request bodies before Gradio reads them. Refusals say one fixed
sentence that tells nothing about the path: whether it exists, its type or its size.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Iterator

from gradio.utils import get_upload_folder

from facemask.images import ImageError

REFUSED = "Refused: this app only reads files uploaded to it. Upload the file again."
BODY_TOO_LARGE = "The request is over the size limit of this app."
DATA_URL_NAME = "the pasted image"
MB = 1024 * 1024


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
    """The "path" of every file record (a dict with that key) anywhere in decoded JSON, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "path" in item:
                yield item["path"]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def body_problem(body: bytes) -> str | None:
    """REFUSED when a JSON body carries a file record whose path is not an upload (URLs included)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON: Gradio refuses it on its own, and there is no path in it to follow
    roots = upload_roots()  # resolved once per body, not once per path
    paths = (path for path in file_paths(value) if path is not None)
    return REFUSED if any(not is_uploaded(path, roots) for path in paths) else None


Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class RequestGuard:
    """ASGI middleware: caps request bodies and refuses file records that are not uploads.

    Uploads themselves (multipart, to .../upload) pass through: Gradio caps them with max_file_size.
    Every other POST is read here in full, up to `max_body` bytes, checked, and handed on.
    """

    def __init__(self, app, max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/").endswith("/upload"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_body:
            await respond(send, 413, BODY_TOO_LARGE)
            return
        body = bytearray()
        while True:  # a body sent in chunks without a length is counted as it comes
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await respond(send, 413, BODY_TOO_LARGE)
                return
            if not message.get("more_body", False):
                break
        problem = body_problem(bytes(body))
        if problem:
            await respond(send, 400, problem)
            return
        await self.app(scope, replay(bytes(body), receive), send)


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


def subfolders(root: str) -> set[str]:
    """Names of the folders directly inside `root` (none if it does not exist)."""
    try:
        return {entry.name for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False)}
    except OSError:
        return set()


def remove_empty_subfolders(root: str, keep: set[str]) -> None:
    """Remove the folders Gradio made in its cache while the app ran and has emptied at exit.

    Gradio deletes the files it cached, not the content-hash folders around them. Only folders
    absent when the app started (`keep` lists those present) and empty now go: rmdir refuses others.
    """
    for name in subfolders(root) - keep:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(root, name))
