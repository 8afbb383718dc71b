"""Frames from a camera, a stream URL or a video file, read by ffmpeg as raw RGB on a pipe.

One ffmpeg process (the binary the imageio-ffmpeg wheel ships) per connection:

    ffmpeg -i SOURCE -map 0:v:0 -vf fps='min(source_fps,MAX_FPS)',scale=...,showinfo -f rawvideo -pix_fmt rgb24 -

Everything a stream says about itself is hostile input, so ffmpeg bounds it before a byte reaches
Python: the `fps` filter caps the frame rate, `scale` shrinks frames to at most `max_frame_side`
(a frame is then at most max_frame_side² x 3 bytes), and a header announcing frames over
`max_frame_pixels` is refused before any frame is read. `showinfo` prints each frame's size and
timestamp (the stream's own clock) on stderr just before the frame's bytes go out on stdout, so
every frame is read with the size it really has, and carries its timestamp.

A reader thread reads the pipe as fast as ffmpeg writes it. Live (`keep_all=False`) it keeps the
frames of the last `max_lag` seconds at most: when processing is slower than the source, older
frames are dropped (and counted), so processing never lags behind the camera by more than that.
The backlog is there because frames do not always come one at a time: a stream hands over what
it buffered while connecting in one burst (87 frames in the first second of an HTTP stream here,
then 15 a second), and processing stalls now and then for a moment (the machine, a slow first
frame); keeping only the newest frame turned each such moment into lost frames. With
`keep_all=True` (a file read as fast as possible) the thread waits for each frame to be taken:
nothing is dropped.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import imageio_ffmpeg
import numpy as np

from facemask.cli import raise_if_stopped
from facemask.video import VideoError, VideoInfo, parse_header

URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "srt")
# What ffmpeg may open for a URL source: the network protocols these schemes need (HLS segments, TLS,
# RTP under RTSP), and never `file`: a playlist served by a camera cannot make ffmpeg read local files.
NETWORK_PROTOCOLS = "tcp,udp,rtp,srtp,rtsp,rtsps,http,https,httpproxy,tls,crypto,srt,data"
LINE_LIMIT = 4096  # bytes of one ffmpeg stderr line kept; a stream's metadata can be made arbitrarily long
LOG_LINES = 30  # ffmpeg's last non-frame lines, kept to explain a failure
DEFAULT_MAX_LAG = 0.25  # seconds of frames kept live: a burst of 3-4 frames at 15 frames/s, well within 0.5 s
MAX_PENDING = 8  # frames kept live at most, whatever the lag (0.25 s at 30 frames/s): 8 x 1280² x 3 bytes at worst
SHOWINFO = re.compile(rb"\] n:\s*(\d+) pts:\s*(?:-?\d+|NOPTS) pts_time:(-?[\d.e+-]+|nan|NOPTS)\s.*? s:(\d+)x(\d+) ")


class StreamError(RuntimeError):
    """The stream cannot be read (any more); the message names the source and says why."""


@dataclass(frozen=True)
class Source:
    """What to read: `kind` is "file", "device" or "url"; `name` is how messages name it."""

    kind: str
    target: str

    @property
    def name(self) -> str:
        """The source as messages, events and logs show it: a URL without its user name and password."""
        if self.kind != "url":
            return self.target
        parts = urlsplit(self.target)
        if parts.username is None and parts.password is None:
            return self.target
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return parts._replace(netloc=f"***@{netloc}").geturl()


@dataclass(frozen=True)
class StreamLimits:
    max_fps: float = 30.0  # higher rates are sampled down to it by ffmpeg
    max_frame_side: int = 1280  # larger frames are scaled down to it by ffmpeg
    max_frame_pixels: int = 3840 * 2160  # a header announcing larger frames is refused


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its pixels, its number in this connection, its time on the stream's clock
    (seconds; None when the stream has none) and when its last byte arrived (time.monotonic())."""

    rgb: np.ndarray
    index: int
    pts: float | None
    arrived: float


def parse_source(text: str) -> Source:
    """SOURCE as given on the command line; ValueError (a usage error) for a URL of another scheme."""
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme.lower() not in URL_SCHEMES:
            raise ValueError(f"{text}: unsupported URL scheme {parts.scheme!r} (use one of "
                             f"{', '.join(s + '://' for s in URL_SCHEMES)})")
        if not parts.hostname and parts.scheme.lower() not in ("udp", "srt"):
            raise ValueError(f"{text}: the URL names no host")
        return Source("url", text)
    if text.startswith("/dev/"):
        return Source("device", text)
    return Source("file", text)


def check_source(source: Source) -> str | None:
    """Why a local source cannot be read (checked before the model loads), or None."""
    if source.kind == "url":
        return None
    path = Path(source.target)
    if not path.exists():
        return f"{path}: {'no such device' if source.kind == 'device' else 'file not found'}"
    if source.kind == "file" and not path.is_file():
        return f"{path}: not a regular file"
    if not os.access(path, os.R_OK):
        return f"{path}: permission denied"
    return None


def ffmpeg_command(source: Source, limits: StreamLimits, realtime_file: bool = False,
                   rtsp_transport: str | None = None) -> list[str]:
    side = limits.max_frame_side
    filters = (f"fps=fps='min(source_fps,{limits.max_fps:g})',"
               f"scale=w='min(iw,{side})':h='min(ih,{side})':force_original_aspect_ratio=decrease,"
               "showinfo=checksum=0")
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"]
    if source.kind == "url":
        command += ["-protocol_whitelist", NETWORK_PROTOCOLS]
        if source.target.lower().startswith("rtsp") and rtsp_transport:
            command += ["-rtsp_transport", rtsp_transport]
    elif source.kind == "device":
        command += ["-f", "v4l2"]
    else:
        command += ["-protocol_whitelist", "file"]
        if realtime_file:
            command += ["-re"]  # at the file's own rate, as a camera would send it
    # passthrough: one frame out per frame through showinfo, no frame duplicated or dropped after it.
    return command + ["-i", source.target, "-map", "0:v:0", "-vf", filters, "-fps_mode", "passthrough",
                      "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]


class FrameReader:
    """One connection to a source: `open()` waits for its header, `next_frame()` gives frames.

    `dropped` counts frames let go before processing took them (live only), for being more than `max_lag`
    seconds older than the newest or than the moment they would be taken; `received` counts every frame
    read from the pipe.
    """

    def __init__(self, source: Source, limits: StreamLimits = StreamLimits(), keep_all: bool = False,
                 realtime_file: bool = False, rtsp_transport: str | None = None,
                 max_lag: float = DEFAULT_MAX_LAG):
        self.source, self.limits, self.keep_all, self.max_lag = source, limits, keep_all, max_lag
        self.command = ffmpeg_command(source, limits, realtime_file, rtsp_transport)
        self.info: VideoInfo | None = None
        self.received = 0
        self.dropped = 0
        self._process: subprocess.Popen | None = None
        self._log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self._header: list[str] = []
        self._header_done = threading.Event()
        self._output_started = False
        self._frame_infos: collections.deque[tuple[int, float | None, int, int]] = collections.deque()
        self._condition = threading.Condition()
        self._pending: collections.deque[Frame] = collections.deque()
        self._finished = False
        self._failure: str | None = None
        self._threads: list[threading.Thread] = []

    # -- opening -------------------------------------------------------------------------------

    def open(self, timeout: float) -> VideoInfo:
        """Start ffmpeg and wait (at most `timeout` s) for the stream's header; StreamError if it fails.

        A stop (facemask.cli) while waiting closes the connection and raises `Interrupted`."""
        self._process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0)
        self._threads = [threading.Thread(target=self._read_log, daemon=True, name="ffmpeg-log"),
                         threading.Thread(target=self._read_frames, daemon=True, name="ffmpeg-frames")]
        for thread in self._threads:
            thread.start()
        try:
            self.info = self._wait_for_header(timeout)
        except BaseException:  # a failure, or a stop: ffmpeg and the threads go
            self.close()
            raise
        return self.info

    def _wait_for_header(self, timeout: float) -> VideoInfo:
        deadline = time.monotonic() + timeout
        while not self._header_done.wait(0.05):
            raise_if_stopped()  # in a thread of its own too, not only where the signal lands
            if time.monotonic() > deadline:
                raise StreamError(f"{self.source.name}: no video header within {timeout:g} s")
        if not self._output_started:  # ffmpeg gave up before its output: the reason is in its last lines
            self._process.wait(timeout=5)
            raise StreamError(f"{self.source.name}: {self.explain()}")
        try:
            info = parse_header(self.source.name, "\n".join(self._header))  # type: ignore[arg-type]
        except VideoError as error:
            raise StreamError(str(error)) from None
        width, height = info.size
        if width * height > self.limits.max_frame_pixels:
            raise StreamError(f"{self.source.name}: its frames are {width}x{height}, {width * height:,} pixels, "
                              f"over the {self.limits.max_frame_pixels:,} limit")
        return info

    def explain(self) -> str:
        """ffmpeg's reason for a failure, from its last lines: the most specific one."""
        lines = [line for line in self._log if line.strip()]
        for line in reversed(lines):
            if "matches no streams" in line:
                return "not a video stream (it has no video track)"
        reasons = [line for line in lines if not line.startswith(("Error opening input file", "Exiting with"))]
        reason = (reasons or lines or ["ffmpeg stopped without saying why"])[-1]
        reason = re.sub(r"^\[[^\]]*\] ", "", reason).replace(f"{self.source.target}: ", "")
        reason = reason.replace(self.source.target, self.source.name).strip()  # never a password in a message
        return reason.removeprefix("Error opening input files: ").removeprefix("Error opening input: ")

    # -- the threads ---------------------------------------------------------------------------

    def _read_log(self) -> None:
        """ffmpeg's stderr: the header until the output starts, then one line per frame (showinfo)."""
        stream = self._process.stderr
        buffer = b""
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            if len(buffer) > LINE_LIMIT:
                buffer = buffer[:LINE_LIMIT]
            for line in lines:
                self._log_line(line[:LINE_LIMIT])
        self._log_line(buffer)
        self._header_done.set()
        with self._condition:
            self._frame_infos.append((-1, None, 0, 0))  # the end: no more frames will be announced
            self._condition.notify_all()

    def _log_line(self, line: bytes) -> None:
        frame = SHOWINFO.search(line)
        if frame:
            pts_text = frame.group(2).decode()
            pts = float(pts_text) if pts_text not in ("nan", "NOPTS") else None
            with self._condition:
                self._frame_infos.append((int(frame.group(1)), pts, int(frame.group(3)), int(frame.group(4))))
                self._condition.notify_all()
            return
        text = line.decode("utf-8", "replace").rstrip("\r")
        if "Parsed_showinfo" in text:
            return  # the rest of showinfo's report on a frame (side data, colours)
        if not self._header_done.is_set():
            if text.startswith("Output #0") or text.startswith("Stream mapping:"):
                self._output_started = True
                self._header_done.set()
            else:
                self._header.append(text)
        self._log.append(text)

    def _read_frames(self) -> None:
        stdout = self._process.stdout
        try:
            while True:
                with self._condition:
                    while not self._frame_infos:
                        self._condition.wait()
                    index, pts, width, height = self._frame_infos.popleft()
                if index < 0:
                    break
                if max(width, height) > self.limits.max_frame_side or width < 1 or height < 1:
                    self._fail(f"a frame of {width}x{height}, over the {self.limits.max_frame_side} px limit")
                    break
                rgb = np.empty((height, width, 3), dtype=np.uint8)
                view = memoryview(rgb).cast("B")
                filled = 0
                while filled < len(view):
                    count = stdout.readinto(view[filled:])
                    if not count:
                        break
                    filled += count
                if filled < len(view):
                    break  # ffmpeg stopped mid-frame: the stream ended or failed
                self._publish(Frame(rgb, index, pts, time.monotonic()))
        except (OSError, ValueError):  # the pipe closed under us by close()
            pass
        with self._condition:
            self._finished = True
            self._condition.notify_all()

    def _publish(self, frame: Frame) -> None:
        with self._condition:
            if self.keep_all:
                while self._pending and not self._finished:
                    self._condition.wait(0.5)  # the file waits for processing: nothing is dropped
            self._pending.append(frame)
            if not self.keep_all:
                while len(self._pending) > MAX_PENDING or frame.arrived - self._pending[0].arrived > self.max_lag:
                    self._pending.popleft()
                    self.dropped += 1
            self.received += 1
            self._condition.notify_all()

    def _fail(self, reason: str) -> None:
        self._failure = f"{self.source.name}: {reason}"
        if self._process is not None:
            self._process.kill()

    # -- taking frames -------------------------------------------------------------------------

    def next_frame(self, timeout: float) -> Frame | None:
        """The oldest frame kept, waiting at most `timeout` s (None then); StreamError once the stream has ended."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not self._pending:
                if self._finished:
                    raise StreamError(self.ending())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)
            if not self.keep_all:  # frames that waited too long here (processing stalled) are let go too
                now = time.monotonic()
                while len(self._pending) > 1 and now - self._pending[0].arrived > self.max_lag:
                    self._pending.popleft()
                    self.dropped += 1
            frame = self._pending.popleft()
            self._condition.notify_all()
            return frame

    def catch_up(self) -> None:
        """Forget the frames that came while the caller was not yet taking any (a model loading), all but the
        newest, and the count of those dropped meanwhile: they are no loss of the caller's."""
        with self._condition:
            while len(self._pending) > 1:
                self._pending.popleft()
            self.dropped = 0

    def ending(self) -> str:
        """Why the stream stopped giving frames."""
        if self._failure:
            return self._failure
        try:
            code = self._process.wait(timeout=5) if self._process is not None else None
        except subprocess.TimeoutExpired:  # its output closed but it does not exit: it is stuck
            self._process.kill()
            code = None
        if code == 0:
            return f"{self.source.name}: the stream ended"
        return f"{self.source.name}: {self.explain()}"

    def close(self) -> None:
        """Stop ffmpeg and the threads (within a fraction of a second)."""
        process = self._process
        with self._condition:
            self._finished = True
            self._condition.notify_all()
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        for thread in self._threads:
            thread.join(timeout=1)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
