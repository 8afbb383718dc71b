"""Boxes on every frame of a video: decode, detect, classify, draw, encode.

Decoding and encoding go through imageio's ffmpeg plugin, which runs the ffmpeg binary that the
imageio-ffmpeg wheel carries. The output is H.264 in MP4 with yuv420p pixels, even frame sizes and
the moov atom at the front: the combination every browser plays while it downloads. The sound
track, if any, is not kept (the summary says so).

Before any frame is decoded, ffmpeg reads the file's header (`probe_video`), so `VideoLimits`
can refuse a video that is too long, has too many frames or frames too large, and plan the
sampling of a high frame rate (ffmpeg drops the frames in between) and the downscaling of large
frames. A small file can hold thousands of huge frames: the header, not the file size, tells.

The frames go through three stages (facemask.stages), so that two cores both work: a reader thread
decodes, the calling thread finds and classifies the faces (all of a frame's faces in one batch; two
frames at once, in a small pool of threads, when the detector is thread-safe), a writer thread draws
and encodes. A stop or the first error of any stage ends all three within about
one frame; every thread is joined before `annotate_video` returns or raises, and nothing is left on disk.
"""

from __future__ import annotations

import math
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import imageio.v2 as imageio
import imageio_ffmpeg
import numpy as np
from PIL import Image

from facemask import not_a_regular_file, save_atomically
from facemask.cli import raise_if_stopped
from facemask.stages import END, Stages, join_stages, start_stage

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
# x264's preset for the annotated video: faster than its default (medium) for files no larger
# (bench/pipeline_bench.py); the encoder runs on the same two cores as the detector.
X264_PRESET = "veryfast"
# Frames in detection at once, each in a thread of its own, when the detector allows it: on one frame at a
# time CenterFace leaves much of the second core idle, even given both (bench/README.md, "Against the
# lightest peer": 66 crowd frames/s as far as the detections one at a time, 95 two at once, on 2 cores).
DETECTING_FRAMES = 2


class VideoError(ValueError):
    """A video that cannot be used; the message names the file and what is wrong."""


class FrameAnnotator(Protocol):
    """What annotating a video needs of a detector: facemask.detection.FaceMaskDetector is one.

    `detect(image, max_side)` gives the faces of a frame, looked for on a copy at most `max_side` large
    (None: the detector's own setting); `draw(image, faces)` the frame with them drawn, called from
    another thread than `detect`. A `thread_safe` detector (an attribute, False if absent) has
    DETECTING_FRAMES frames detected at once. Typed here so that this module needs nothing of
    facemask.detection (nor the models it loads), which imports it to annotate videos.
    """

    def detect(self, image: Image.Image, max_side: int | None = None) -> Sequence[object]: ...

    def draw(self, image: Image.Image, detections: Sequence[object]) -> Image.Image: ...


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
    """Decode, detect, draw and encode every frame into `target` (H.264) in three threads (see the
    module's doc); frames, faces and frames per second. The first error of any stage is raised, a stop
    before any other."""
    stages = Stages()
    started = time.perf_counter()
    threads: list[threading.Thread] = []
    faces = 0
    try:
        threads.append(start_stage(read_stage, reader, source, plan, limits, stages))
        threads.append(start_stage(write_stage, target, source, detector, plan, progress, stages))
        faces = detect_stage(source, detector, max_side, stages)
    except BaseException as error:  # noqa: BLE001 - kept, and raised once every thread has ended
        stages.fail(error)
    finally:
        join_stages(threads, stages)
    if stages.error is not None:
        raise_if_stopped()  # Ctrl+C reaches ffmpeg too, which may fail first: the stop, not a broken pipe
        raise stages.error
    elapsed = time.perf_counter() - started
    if stages.written == 0:
        raise VideoError(f"{source}: the video has no frames")
    return {"frames": stages.written, "faces": faces,
            "processing_fps": stages.written / elapsed if elapsed > 0 else float("inf")}


def stage_error(source: Path, error: BaseException, what: str) -> BaseException:
    """`error` as a VideoError naming the file and what failed; a VideoError, or a stop, as it is."""
    if isinstance(error, VideoError) or not isinstance(error, Exception):
        return error
    detail = f": {first_line(error)}" if str(error).strip() else ""
    wrapped = VideoError(f"{source}: {what} ({type(error).__name__}{detail})")
    wrapped.__cause__ = error
    return wrapped


def read_stage(reader, source: Path, plan: ReadingPlan, limits: VideoLimits, stages: Stages) -> None:
    """The reader thread: every frame, even-sized, as a PIL image into `stages.decoded`, then END."""
    try:
        for frames, frame in enumerate(iterate_frames(reader, source)):
            check_running_limits(source, frames, plan.fps, limits)  # `frames`: how many came before this one
            if not stages.put(stages.decoded, Image.fromarray(even_size(frame))):
                return
        stages.put(stages.decoded, END)
    except BaseException as error:  # noqa: BLE001 - raised by encode_annotated, in the calling thread
        stages.fail(stage_error(source, error, "the video could not be read"))


def detect_stage(source: Path, detector: FrameAnnotator, max_side: int | None, stages: Stages) -> int:
    """The calling thread: the faces of every frame into `stages.detected`, in order, then END; how many faces.

    A thread-safe detector works on DETECTING_FRAMES frames at once, in a pool of threads; any other
    detects each frame here, in turn."""
    at_once = DETECTING_FRAMES if getattr(detector, "thread_safe", False) else 1
    pending: deque[tuple[Image.Image, Future | None]] = deque()
    frames = faces = 0
    ended = False
    with ThreadPoolExecutor(at_once, thread_name_prefix="facemask-video-detect") as pool:  # idle when 1
        while True:
            while not ended and len(pending) < at_once:
                image = stages.get(stages.decoded)
                ended = image is END
                if not ended:
                    pending.append((image, pool.submit(detector.detect, image, max_side) if at_once > 1 else None))
            if not pending:
                break
            image, future = pending.popleft()
            try:
                found = future.result() if future is not None else detector.detect(image, max_side)
            except Exception as error:
                raise stage_error(source, error, f"frame {frames + 1} could not be annotated") from error
            if not stages.put(stages.detected, (image, found)):
                break
            frames, faces = frames + 1, faces + len(found)
    raise_if_stopped()  # SIGINT or SIGTERM (facemask.cli) ended the loop, not the video's end
    stages.put(stages.detected, END)
    return faces


def write_stage(target: Path, source: Path, detector: FrameAnnotator, plan: ReadingPlan,
                progress: Callable[[int, int | None], None] | None, stages: Stages) -> None:
    """The writer thread: every frame with its faces drawn, encoded into `target`; `progress` after each."""
    try:
        writer = open_writer(target, plan.fps)
        try:
            while (item := stages.get(stages.detected)) is not END:
                image, found = item
                writer.append_data(np.asarray(detector.draw(image, found)))
                stages.written += 1
                if progress is not None:
                    progress(stages.written, plan.expected_frames)
        finally:
            writer.close()  # after a halt too: ffmpeg's process ends before the partial file is removed
    except BaseException as error:  # noqa: BLE001 - raised by encode_annotated, in the calling thread
        stages.fail(stage_error(source, error, f"frame {stages.written + 1} could not be drawn or encoded"))


def open_writer(target: Path, fps: float, preset: str | None = X264_PRESET):
    """imageio's writer of an H.264 MP4 that browsers play while it downloads (see the module's doc).

    `preset`: x264's speed/size trade-off; None leaves x264's own default ("medium", what bench/ compares to).
    """
    preset_params = ["-preset", preset] if preset else []
    return imageio.get_writer(target, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                              macro_block_size=1, ffmpeg_log_level="error",
                              output_params=[*preset_params, "-movflags", "+faststart"])


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
