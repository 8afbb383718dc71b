"""Boxes on every frame of a video: decode, detect, classify, draw, encode.

Decoding and encoding go through imageio's ffmpeg plugin, which runs the ffmpeg binary that the
imageio-ffmpeg wheel carries. The output is H.264 in MP4 with yuv420p pixels, even frame sizes and
the moov atom at the front: the combination every browser plays while it downloads. The sound
track, if any, is not kept (the summary says so).

Before any frame is decoded, ffmpeg reads the file's header (`probe_video`), so `VideoLimits`
can refuse a video that is too long, has too many frames or frames too large, and plan the
sampling of a high frame rate (ffmpeg drops the frames in between) and the downscaling of large
frames. A small file can hold thousands of huge frames: the header, not the file size, tells.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import imageio.v2 as imageio
import imageio_ffmpeg
import numpy as np
from PIL import Image

from facemask import not_a_regular_file, save_atomically
from facemask.cli import raise_if_stopped

VIDEO_EXTENSIONS = {".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v"}
# Faces are looked for on a copy of each frame at most this large. Webcam faces are big, and a
# detector's cost grows with the pixel count: 320 instead of 640 runs markedly faster (figures in
# bench/README.md, bench/detect_bench.py); the smallest faces of a 640x480 frame are then missed
# (they are half as large in the copy).
VIDEO_MAX_SIDE = 320
# What a broken or foreign file makes imageio / ffmpeg raise, while opening or mid-stream.
DECODE_ERRORS = (OSError, RuntimeError, ValueError, IndexError, StopIteration)
# ffmpeg's demuxers for single pictures: a photo renamed .mp4 is refused, not annotated as one frame.
STILL_IMAGE_FORMATS = re.compile(r"^(image2|.*_pipe)$")
PROBE_TIMEOUT = 60  # seconds; reading a header takes well under one
# Fewer frames than this share of what the header announces means the end of the file is missing.
TRUNCATION_SHARE = 0.9


class VideoError(ValueError):
    """A video that cannot be used; the message names the file and what is wrong."""


class FrameAnnotator(Protocol):
    """What annotating a video needs of a detector: facemask.detection.FaceMaskDetector is one.

    `annotate(image, max_side)` gives the frame with its faces drawn and the faces found, looked for
    on a copy at most `max_side` large (None: the detector's own setting). Typed here so that this
    module needs nothing of facemask.detection (nor the models it loads), which imports it to annotate videos.
    """

    def annotate(self, image: Image.Image, max_side: int | None = None) -> tuple[Image.Image, Sequence[object]]: ...


@dataclass(frozen=True)
class VideoLimits:
    """What a video may cost; None is no limit. The web app sets all of them, the command line none."""

    max_seconds: float | None = None
    max_fps: float | None = None  # higher frame rates are sampled down to this one
    max_frame_pixels: int | None = None  # larger frames are refused
    max_frames: int | None = None  # frames processed, after sampling
    max_frame_side: int | None = None  # larger frames are scaled down to this long side


@dataclass(frozen=True)
class VideoInfo:
    """What ffmpeg reads from a video's header, before decoding any frame."""

    fps: float
    seconds: float | None
    size: tuple[int, int]  # width, height
    has_audio: bool


def probe_video(source: Path) -> VideoInfo:
    """The header of `source` as ffmpeg reads it (no frame is decoded); VideoError if it is no video."""
    if problem := not_a_regular_file(source):  # ffmpeg would wait on a FIFO until PROBE_TIMEOUT
        raise VideoError(f"{source}: {problem}")
    if not source.is_file():
        raise VideoError(f"{source}: file not found")
    try:
        # ffmpeg with an input and no output prints the header and stops.
        result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(source)],
                                capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired as error:
        raise VideoError(f"{source}: not a readable video (its header took over {PROBE_TIMEOUT} s to read)") from error
    return parse_header(source, result.stderr)


def parse_header(source: Path, text: str) -> VideoInfo:
    container = re.search(r"^Input #0, (.+?), from ", text, re.MULTILINE)
    video = re.search(r"^\s*Stream #0:\d+.*?: Video: (.*)$", text, re.MULTILINE)
    if container is None or video is None:
        problem = [line for line in text.splitlines() if line.strip() and "output file" not in line]
        reason = problem[-1].replace(f"{source}: ", "").strip() if problem else "no video stream"
        raise VideoError(f"{source}: not a readable video ({reason})")
    size = re.search(r", (\d+)x(\d+)", video.group(1))
    rate = re.search(r", ([\d.]+)(k?) fps", video.group(1)) or re.search(r", ([\d.]+)(k?) tbr", video.group(1))
    fps = float(rate.group(1)) * (1000 if rate.group(2) else 1) if rate else 0.0
    if size is None or not fps > 0 or not math.isfinite(fps):
        raise VideoError(f"{source}: not a readable video (no frame size or frame rate in its header)")
    if STILL_IMAGE_FORMATS.match(container.group(1)):
        raise VideoError(f"{source}: a still image ({container.group(1)}), not a video")
    duration = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    seconds = None
    if duration:
        hours, minutes, secs = duration.groups()
        seconds = (int(hours) * 60 + int(minutes)) * 60 + float(secs)
    has_audio = re.search(r"^\s*Stream #0:\d+.*?: Audio: ", text, re.MULTILINE) is not None
    return VideoInfo(fps, seconds or None, (int(size.group(1)), int(size.group(2))), has_audio)


@dataclass(frozen=True)
class ReadingPlan:
    """How a video is read: at which rate and size, and how many frames that should give."""

    fps: float
    size: tuple[int, int] | None  # None: the source's own
    expected_frames: int | None


def plan_reading(source: Path, info: VideoInfo, limits: VideoLimits) -> ReadingPlan:
    """Check the header against the limits (VideoError naming the file and the limit) and plan the reading."""
    width, height = info.size
    if limits.max_seconds is not None and info.seconds is not None and info.seconds > limits.max_seconds:
        raise VideoError(f"{source}: the video lasts {info.seconds:.1f} s, over the {limits.max_seconds:g} s limit")
    if limits.max_frame_pixels is not None and width * height > limits.max_frame_pixels:
        raise VideoError(f"{source}: its frames are {width}x{height}, {width * height:,} pixels, over the "
                         f"{limits.max_frame_pixels:,} limit")
    fps = min(info.fps, limits.max_fps) if limits.max_fps is not None else info.fps
    expected = round(info.seconds * fps) if info.seconds is not None else None
    if limits.max_frames is not None and expected is not None and expected > limits.max_frames:
        raise VideoError(f"{source}: {expected:,} frames at {fps:.3g} fps, over the {limits.max_frames:,} frame limit")
    size = None
    if limits.max_frame_side is not None and max(width, height) > limits.max_frame_side:
        scale = limits.max_frame_side / max(width, height)
        size = (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))
    return ReadingPlan(fps, size, expected)


def first_line(error: BaseException) -> str:
    """ffmpeg errors carry its whole log; the first line says what went wrong."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def even_size(frame: np.ndarray) -> np.ndarray:
    """Drop a last odd row or column: yuv420p needs even width and height."""
    height, width = frame.shape[:2]
    return frame[: height - height % 2, : width - width % 2]


def annotate_video(source: Path, destination: Path, detector: FrameAnnotator, limits: VideoLimits | None = None,
                   progress: Callable[[int, int | None], None] | None = None,
                   max_side: int | None = VIDEO_MAX_SIDE) -> dict:
    """Write `destination` (an H.264 MP4) with every frame of `source` annotated; returns statistics.

    `progress(done, total)` is called after each frame (total is None when the file does not say).
    The header is checked against `limits` before any frame is decoded; frame rates above
    `limits.max_fps` are sampled down to it. Faces are found on a copy of each frame at most
    `max_side` large (None: the detector's own setting). The statistics include `warning`, a
    sentence when fewer frames could be read than the header announces (else None).
    """
    source, destination = Path(source), Path(destination)
    limits = limits or VideoLimits()
    info = probe_video(source)
    plan = plan_reading(source, info, limits)
    try:
        # fps and size make ffmpeg drop and scale frames itself, before they reach Python.
        reader = imageio.get_reader(source, format="FFMPEG", fps=plan.fps if plan.fps < info.fps else None,
                                    size=plan.size)
    except DECODE_ERRORS as error:
        raise VideoError(f"{source}: not a readable video ({first_line(error)})") from error
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        # Through a temporary file: `destination` appears only once the video is whole.
        stats = save_atomically(destination, lambda temporary: encode_annotated(
            reader, source, temporary, detector, plan, limits, progress, max_side))
    finally:
        reader.close()
    expected = plan.expected_frames
    warning = None
    if expected is not None and stats["frames"] < TRUNCATION_SHARE * expected - 1:
        warning = (f"{source}: only {stats['frames']} of the {expected} frames its header announces could be read; "
                   "the file looks truncated or damaged")
    return stats | {"fps_source": info.fps, "fps_output": plan.fps, "seconds_source": stats["frames"] / plan.fps,
                    "expected_frames": expected, "sampled": plan.fps < info.fps, "has_audio": info.has_audio,
                    "size": plan.size or info.size, "warning": warning, "output": str(destination)}


def encode_annotated(reader, source: Path, target: Path, detector: FrameAnnotator, plan: ReadingPlan,
                     limits: VideoLimits, progress: Callable[[int, int | None], None] | None,
                     max_side: int | None) -> dict:
    """Detect, draw and encode every frame into `target` (H.264); frames, faces and frames per second."""
    writer = imageio.get_writer(target, format="FFMPEG", fps=plan.fps, codec="libx264",
                                pixelformat="yuv420p", macro_block_size=1, ffmpeg_log_level="error",
                                output_params=["-movflags", "+faststart"])
    frames, faces, started = 0, 0, time.perf_counter()
    try:
        for frame in iterate_frames(reader, source):
            raise_if_stopped()  # SIGINT or SIGTERM (facemask.cli): between two frames, wherever this runs
            check_running_limits(source, frames, plan.fps, limits)
            annotated, found = detector.annotate(Image.fromarray(even_size(frame)), max_side)
            faces += len(found)
            writer.append_data(np.asarray(annotated))
            frames += 1
            if progress is not None:
                progress(frames, plan.expected_frames)
    finally:
        writer.close()
    elapsed = time.perf_counter() - started
    if frames == 0:
        raise VideoError(f"{source}: the video has no frames")
    return {"frames": frames, "faces": faces, "processing_fps": frames / elapsed if elapsed > 0 else float("inf")}


def check_running_limits(source: Path, frames: int, fps: float, limits: VideoLimits) -> None:
    """The limits again while reading: a header may hide its duration, or understate it."""
    if limits.max_seconds is not None and frames >= limits.max_seconds * fps + 1:
        raise VideoError(f"{source}: the video lasts over the {limits.max_seconds:g} s limit")
    if limits.max_frames is not None and frames >= limits.max_frames:
        raise VideoError(f"{source}: the video has over {limits.max_frames:,} frames, the limit")


def iterate_frames(reader, source: Path):
    """The reader's frames, with decoding failures turned into a VideoError that names the file."""
    iterator = iter(reader)
    while True:
        try:
            frame = next(iterator)
        except StopIteration:
            return
        except DECODE_ERRORS as error:
            raise VideoError(f"{source}: damaged video data ({first_line(error)})") from error
        yield frame
