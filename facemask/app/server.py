"""What the web app's process does for itself, around Gradio: a cache folder of its own, one log line
per failed request, and the memory a request freed handed back to the system.

Each reaches into Gradio or the C library a little (module globals, glibc's malloc_trim) and says so;
`facemask app` wraps its serving in `private_cache` and `one_line_errors`, which put back
what they change when they end, so an app built in a test process is left as Gradio made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

from gradio.utils import get_upload_folder

from facemask import remove_tree
from facemask.cli import printable

ERROR_CHARS = 200  # of an exception's message in its log line
# The Gradio modules that read GRADIO_TEMP_DIR once, at import, for their temporary files.
GRADIO_TEMP_DIR_MODULES = ("gradio.routes", "gradio.route_utils", "gradio.mcp", "gradio.screen_recording_utils")


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only: musl and macOS have none
        return libc
    except (OSError, AttributeError):
        return None


LIBC = _load_libc()


def release_memory() -> None:
    """Give the heap memory freed by a request back to the system (glibc's malloc_trim; elsewhere nothing).

    Without it glibc keeps what a large photo's copies took, and the server stays gigabytes larger
    after a burst of them than before (bench/app_memory.py measures both).
    """
    if LIBC is not None:
        LIBC.malloc_trim(0)


@contextlib.contextmanager
def private_cache() -> Iterator[Path]:
    """A folder of this app's own inside Gradio's cache folder, Gradio's cache while the block runs.

    Everything the app stores goes there and goes with it at the end, including what Gradio forgets
    (the bytes of an upload it refused for its name); other apps sharing the cache folder keep theirs.
    Gradio reads GRADIO_TEMP_DIR whenever it stores an upload or a result, and once, at import, for
    its other temporary files (DEFAULT_TEMP_DIR in a few modules), which point there too meanwhile.
    """
    parent = Path(get_upload_folder())
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="facemask-app-", dir=parent))
    modules = [sys.modules[name] for name in GRADIO_TEMP_DIR_MODULES
               if hasattr(sys.modules.get(name), "DEFAULT_TEMP_DIR")]
    previous = os.environ.get("GRADIO_TEMP_DIR"), [module.DEFAULT_TEMP_DIR for module in modules]
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    for module in modules:
        module.DEFAULT_TEMP_DIR = str(folder)
    try:
        yield folder
    finally:
        if previous[0] is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous[0]
        for module, value in zip(modules, previous[1], strict=True):
            module.DEFAULT_TEMP_DIR = value
        remove_tree(folder)


def describe(error: BaseException) -> str:
    """`KeyError: 999`: the exception in one short line."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return printable(text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS - 3] + "...")


class OneLineTracebacks:
    """Stands in for the `traceback` module inside Gradio's modules: `print_exc` prints one line."""

    def __getattr__(self, name: str):
        return getattr(traceback, name)

    @staticmethod
    def print_exc(*args, **kwargs) -> None:
        log_failure(sys.exc_info()[1])


def log_failure(error: BaseException | None) -> None:
    """`error: request failed: <type>: <message>` on stderr; nothing for a request cancelled as the server stops."""
    if error is not None and not isinstance(error, asyncio.CancelledError):
        print(f"error: request failed: {describe(error)}", file=sys.stderr, flush=True)


def one_line_log_record(record: logging.LogRecord) -> bool:
    """A logging filter: an exception uvicorn logs (a route that failed) becomes one line of ours, and
    its note that it cancelled the requests still open when the server stopped goes (that is the stop)."""
    if record.exc_info and record.exc_info[1] is not None:
        log_failure(record.exc_info[1])
        return False
    return not record.getMessage().startswith("Cancel ")


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """One log line per failed request while the block runs: Gradio prints a whole traceback for each
    request that fails (a malformed one included) and uvicorn logs one, so a client could fill the log."""
    import gradio.queueing
    import gradio.route_utils
    import gradio.routes
    import gradio.utils

    modules = (gradio.queueing, gradio.route_utils, gradio.routes, gradio.utils)
    logger = logging.getLogger("uvicorn.error")
    for module in modules:
        module.traceback = OneLineTracebacks()
    logger.addFilter(one_line_log_record)
    try:
        yield
    finally:
        logger.removeFilter(one_line_log_record)
        for module in modules:
            module.traceback = traceback
