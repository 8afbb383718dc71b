"""What a watch writes: line files that only ever grow by whole lines, and video segments that appear whole.

`LineFile` (events.jsonl, counts.csv) appends each line with one write() on a file opened with
O_APPEND. A read and a write of a regular file are atomic with respect to each other (POSIX), so a
reader sees a line entirely or not at all; a write cut short (a full disk) is undone by truncating
the file back to where the line began, and reported. An existing file is appended to (a restarted
watch goes on with the same files), once its header has been checked.

`SegmentRecorder` encodes the annotated frames into H.264 MP4 segments of a set duration, each
written under a hidden temporary name beside the final one and renamed once it is closed: a
segment is in the folder whole or not at all, however the watch ends.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from facemask import partial_path
from facemask.video import even_size

SEGMENT_CODEC_OPTIONS = [
    "-movflags", "+faststart",  # playable while it downloads, as facemask.video writes its MP4s
    # No look-ahead: each frame is encoded as it comes, so closing a segment (at a stop too) takes
    # a few milliseconds, and the encoder's CPU time stays small beside face detection.
    "-preset", "veryfast", "-tune", "zerolatency",
]


def iso_time(seconds: float) -> str:
    """A wall-clock time (time.time()) as ISO 8601 with the local offset, to the millisecond."""
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="milliseconds")


def check_output_file(path: Path, header: str | None = None) -> str | None:
    """Why a line file cannot be written at `path` (checked before the model loads), or None."""
    if path.exists():
        if not path.is_file():
            return f"{path}: not a regular file"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"{path}: permission denied"
        return None if header is None else header_problem(path, header)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return f"{path}: no folder {parent}"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"{path}: cannot create a file in {parent}"


def header_problem(path: Path, header: str) -> str | None:
    """Why an existing, non-empty CSV cannot be appended to (another header), or None."""
    with open(path, "rb") as existing:
        first = existing.readline(4096).rstrip(b"\r\n").decode("utf-8", "replace")
    if first and first != header:
        return f"{path}: exists with another header ({first[:80]!r}, not {header!r})"
    return None


class LineFile:
    """A text file that grows by whole lines; a CSV's header is written on creation and checked on reopening."""

    def __init__(self, path: Path, header: str | None = None):
        self.path = Path(path)
        # O_NONBLOCK: a FIFO put in the file's place fails to open instead of blocking until someone reads it.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as error:
            raise OSError(f"{self.path}: cannot open ({error.strerror})") from error
        try:
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                raise OSError(f"{self.path}: not a regular file")
            size = os.fstat(self._fd).st_size
            if size == 0 and header is not None:
                self.write(header)
            elif size:
                self._check_existing(header, size)
        except BaseException:
            os.close(self._fd)
            raise

    def _check_existing(self, header: str | None, size: int) -> None:
        problem = header_problem(self.path, header) if header is not None else None
        if problem:
            raise OSError(problem)
        with open(self.path, "rb") as existing:
            existing.seek(size - 1)
            whole = existing.read(1) == b"\n"
        if not whole:  # a line cut short by someone else: ours start on a line of their own
            os.write(self._fd, b"\n")

    def write(self, line: str) -> None:
        data = line.encode("utf-8") + b"\n"
        start = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, data)
        except OSError as error:
            raise OSError(f"{self.path}: cannot write ({error.strerror})") from error
        if written != len(data):
            os.ftruncate(self._fd, start)
            raise OSError(f"{self.path}: cannot write (only {written} of {len(data)} bytes fitted)")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class SegmentRecorder:
    """Annotated frames into `folder/<local start time>.mp4` segments of `seconds` each, at `fps`."""

    def __init__(self, folder: Path, seconds: float, fps: float):
        self.folder, self.seconds, self.fps = Path(folder), seconds, fps
        self.written: list[Path] = []
        self._writer = None
        self._target: Path | None = None
        self._partial: Path | None = None
        self._size: tuple[int, int] | None = None
        self._frames = 0

    def add(self, rgb: np.ndarray, wall: float, repeat: int = 1) -> None:
        """Append a frame (`repeat` times: a frame dropped before it is shown as this one, so time runs right)."""
        rgb = even_size(rgb)
        size = (rgb.shape[1], rgb.shape[0])
        if self._writer is not None and (size != self._size or self._frames >= self.seconds * self.fps):
            self.close()
        if self._writer is None:
            self._start(wall, size)
        for _ in range(max(1, repeat)):
            self._writer.append_data(rgb)
            self._frames += 1

    def _start(self, wall: float, size: tuple[int, int]) -> None:
        stem = datetime.fromtimestamp(wall).strftime("%Y%m%d-%H%M%S")
        target, counter = self.folder / f"{stem}.mp4", 1
        while target.exists() or target in self.written:
            counter += 1
            target = self.folder / f"{stem}-{counter}.mp4"
        self._target, self._partial, self._size, self._frames = target, partial_path(target), size, 0
        self._writer = imageio.get_writer(self._partial, format="FFMPEG", fps=self.fps, codec="libx264",
                                          pixelformat="yuv420p", macro_block_size=1, ffmpeg_log_level="error",
                                          output_params=SEGMENT_CODEC_OPTIONS)

    def close(self) -> Path | None:
        """Close the open segment and give it its name; the segment's path, or None if none was open."""
        if self._writer is None:
            return None
        writer, target, partial = self._writer, self._target, self._partial
        self._writer = None
        try:
            writer.close()
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        self.written = [*self.written[-9:], target]  # the last few, for names only: memory stays flat
        return target
