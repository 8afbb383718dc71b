"""Threads that pass frames along queues, and stop together: what lets a video's stages overlap.

facemask.video runs three stages on one video: a reader thread decodes, the calling thread finds
and classifies the faces (handing two frames at a time to a pool of threads when the detector is
thread-safe, and taking them back in order), a writer thread draws and encodes. Frames wait between two stages in
queues of QUEUE_FRAMES, one producer and one consumer each, so they stay in order. ONNX Runtime,
Pillow's resizing and drawing, and the pipes to ffmpeg release the GIL while they work, so two cores
both work (bench/pipeline_bench.py measures it).

The first stage that fails keeps its error in `Stages` and halts the others; a stop (SIGINT or
SIGTERM, facemask.cli.STOP) halts them too. Every wait on a queue lasts at most POLL_SECONDS, so each
stage sees a halt within about one frame, and a full queue never blocks a stage whose consumer is gone.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Sequence

from facemask.cli import STOP

# Frames waiting between two stages: enough to ride out a slow frame, little memory (6 MB a Full HD frame).
QUEUE_FRAMES = 4
POLL_SECONDS = 0.05  # how often a stage waiting on a queue looks whether the others have halted
END = object()  # the item after a stage's last frame; also what `get` gives once the stages have halted


class Stages:
    """What the threads working on one video share: two queues, the first error, and the halt."""

    def __init__(self) -> None:
        self.decoded: queue.Queue = queue.Queue(QUEUE_FRAMES)  # reader -> detection
        self.detected: queue.Queue = queue.Queue(QUEUE_FRAMES)  # detection -> writer
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.written = 0  # frames encoded, counted by the writer
        self._lock = threading.Lock()

    def halted(self) -> bool:
        return self.halt.is_set() or STOP.is_set()

    def fail(self, error: BaseException) -> None:
        """Keep the first error, or a stop over any other (it decides how a command ends); halt every stage."""
        with self._lock:
            stop_first = isinstance(error, KeyboardInterrupt) and not isinstance(self.error, KeyboardInterrupt)
            if self.error is None or stop_first:
                self.error = error
        self.halt.set()

    def put(self, box: queue.Queue, item: object) -> bool:
        """Queue `item`; False if the stages halted first."""
        while not self.halted():
            try:
                box.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def get(self, box: queue.Queue) -> object:
        """The next item, or END once the stages have halted."""
        while not self.halted():
            try:
                return box.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
        return END


def start_stage(stage: Callable[..., None], *args: object) -> threading.Thread:
    """Run `stage(*args)` in a thread of its own, named after it, with a copy of the caller's context
    variables: through them Gradio finds the request whose progress bar the writer moves."""
    thread = threading.Thread(target=contextvars.copy_context().run, args=(stage, *args),
                              name=f"facemask-video-{stage.__name__}", daemon=True)
    thread.start()
    return thread


def join_stages(threads: Sequence[threading.Thread], stages: Stages) -> None:
    """Wait for every thread to end, whatever happens meanwhile: a stop signal halts them and is kept."""
    for thread in threads:
        while thread.is_alive():
            try:
                thread.join()
            except KeyboardInterrupt as stop:  # facemask.cli.Interrupted, raised in the main thread
                stages.fail(stop)
