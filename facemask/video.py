"""Boxes on every frame of a video: decode, detect, classify, draw, encode.

Decoding and encoding go through imageio's ffmpeg plugin, which runs the ffmpeg binary that the
imageio-ffmpeg wheel carries. The output is H.264 in MP4 with yuv420p pixels, even frame sizes and
the moov atom at the front: the combination every browser plays while it downloads.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import imageio.v2 as imageio
import numpy as np
from PIL import Image

from facemask import partial_path

if TYPE_CHECKING:
    from facemask.detect import FaceMaskDetector

VIDEO_EXTENSIONS = {".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v"}
# Faces are looked for on a copy of each frame at most this large. Webcam faces are big, and MTCNN's
# cost grows with the pixel count: 320 instead of 640 is most of the way to 10 frames/s on 2 cores
# (bench/detect_bench.py); faces under about 40 px in a 640x480 frame are then missed.
VIDEO_MAX_SIDE = 320
# What a broken or foreign file makes imageio / ffmpeg raise, while opening or mid-stream.
DECODE_ERRORS = (OSError, RuntimeError, ValueError, IndexError, StopIteration)


class VideoError(ValueError):
    """A video that cannot be used; the message names the file and what is wrong."""


def open_video(source: Path):
    """An imageio reader and the video's (fps, seconds, frame count or None), checked before any work."""
    if not source.is_file():
        raise VideoError(f"{source}: file not found")
    try:
        reader = imageio.get_reader(source, format="FFMPEG")
        meta = reader.get_meta_data()
    except DECODE_ERRORS as error:
        raise VideoError(f"{source}: not a readable video ({first_line(error)})") from error
    fps = float(meta.get("fps") or 0)
    seconds = float(meta.get("duration") or 0)
    if not fps > 0 or not math.isfinite(fps):
        reader.close()
        raise VideoError(f"{source}: no video frame rate in the file; is it a video?")
    frames = round(seconds * fps) if seconds > 0 and math.isfinite(seconds) else None
    return reader, fps, (seconds if frames else None), frames


def first_line(error: BaseException) -> str:
    """ffmpeg errors carry its whole log; the first line says what went wrong."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def even_size(frame: np.ndarray) -> np.ndarray:
    """Drop a last odd row or column: yuv420p needs even width and height."""
    height, width = frame.shape[:2]
    return frame[: height - height % 2, : width - width % 2]


def annotate_video(source: Path, destination: Path, detector: FaceMaskDetector, max_seconds: float | None = None,
                   progress: Callable[[int, int | None], None] | None = None,
                   max_side: int | None = VIDEO_MAX_SIDE) -> dict:
    """Write `destination` (an H.264 MP4) with every frame of `source` annotated; returns statistics.

    `progress(done, total)` is called after each frame (total is None when the file does not say).
    A video over `max_seconds` is refused from its metadata, before any frame is processed. Faces are
    found on a copy of each frame at most `max_side` large (None: the detector's own setting).
    """
    from facemask.detect import draw_detections  # detect imports this module, so import late

    source, destination = Path(source), Path(destination)
    reader, fps, seconds, expected_frames = open_video(source)
    temporary = None
    try:
        if max_seconds is not None and seconds is not None and seconds > max_seconds:
            raise VideoError(f"{source}: the video lasts {seconds:.1f} s, over the {max_seconds:g} s limit")
        destination.parent.mkdir(parents=True, exist_ok=True)
        # A hidden name beside the destination: the final rename stays on one file system.
        temporary = partial_path(destination)
        writer = imageio.get_writer(temporary, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                                    macro_block_size=1, ffmpeg_log_level="error",
                                    output_params=["-movflags", "+faststart"])
        frames, faces, started = 0, 0, time.perf_counter()
        try:
            for frame in iterate_frames(reader, source):
                if max_seconds is not None and frames >= max_seconds * fps + 1:
                    # The metadata had no duration: stop as soon as the limit is passed.
                    raise VideoError(f"{source}: the video lasts over the {max_seconds:g} s limit")
                image = Image.fromarray(even_size(frame))
                detections = detector.detect(image, max_side)
                faces += len(detections)
                writer.append_data(np.asarray(draw_detections(image, detections)))
                frames += 1
                if progress is not None:
                    progress(frames, expected_frames)
        finally:
            writer.close()
        elapsed = time.perf_counter() - started
        if frames == 0:
            raise VideoError(f"{source}: the video has no frames")
        os.replace(temporary, destination)
        temporary = None
    finally:
        reader.close()
        if temporary is not None:
            temporary.unlink(missing_ok=True)
    return {"frames": frames, "fps_source": fps, "seconds_source": frames / fps, "faces": faces,
            "processing_fps": frames / elapsed if elapsed > 0 else float("inf"), "output": str(destination)}


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
