"""The web app's Live tab: webcam frames in, the same frames with each person boxed and numbered out, as fast as
the machine goes, with a running count of the people seen.

Gradio streams the webcam as JPEG data URLs, one every `stream_every` seconds while the page is
not waiting for an answer, and the server keeps only the newest frame it was sent (each one
overwrites the last): a slow machine drops frames, it never queues them up. A frame is checked
like any upload (facemask.app.uploads, then facemask.images.load_image with the video frame pixel
limit) before it is decoded, scaled down to the video frame size limit like video frames, and its
faces are looked for on a copy at most VIDEO_MAX_SIDE large, as the video path does.

Each viewer's stream has a `LiveWatch` of its own, kept in the page's session state: faces are
followed from frame to frame by the tracker of `facemask watch` (facemask.tracking), so a
box carries the person's number and the label of all their frames so far, and the summary counts
the people seen since the stream started, with and without a mask. A pause of over
NEW_STREAM_SECONDS without a frame (the viewer stopped the webcam) starts a new count.

Frames go back inline, as JPEG data URLs, not as files: Gradio would otherwise write every frame
into its cache, thousands of files an hour for one viewer.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Sequence

import gradio as gr
from gradio.data_classes import ImageData
from PIL import Image

from facemask.detection import Detection, FaceMaskDetector
from facemask.images import MAX_PIXELS, Box, load_image, shrink
from facemask.tracking import (
    DEFAULT_LOST_SECONDS,
    DEFAULT_TRACKER,
    FAINT_SHARE,
    LibraryTracks,
    PersonTracker,
    draw_people,
    track_frame,
)
from facemask.video import VIDEO_MAX_SIDE, VideoLimits

LIVE_FRAME_NAME = "the webcam frame"
# Seconds between frames the page sends at most; the server answers as fast as it can, keeping only the
# newest frame. The page sends one only on its timer's tick, so after each answer the server idles until
# the next tick: 0.05 shows more frames a second in Chromium than 0.1, with no more lag; 1/30 posts more
# frames the server only drops, for no clear further gain (bench/live_bench.py, bench/README.md).
STREAM_EVERY = 0.05
# The frame rate the tracker expects of a live stream: about what the server answers on 2 cores
# (bench/README.md), fewer than the 1 / STREAM_EVERY the page may send.
LIVE_FPS = 10.0
JPEG_QUALITY = 80  # frames sent back: about 30 kB at 640x480, quick to encode and to show
# Seconds without a frame after which the next one starts a new stream (and count): far longer than the
# gaps between frames of a running stream, shorter than stopping the webcam and starting it again.
NEW_STREAM_SECONDS = 10.0
# A face is a person once tracked on this many frames. The tracker confirms a track on its second frame;
# the page sends far fewer frames a second than a watched camera gives (one per STREAM_EVERY at most, fewer
# while the server is busy), so that is about as soon in seconds as the watch's third frame.
LIVE_MIN_FRAMES = 1


class SerialDetector:
    """One FaceMaskDetector shared by the app's request lanes, used by one call at a time.

    The Live tab has a lane of its own, so that a live viewer does not hold up photos and videos
    for its whole time limit; this lock still keeps the shared classifier and face detector from running
    two calls at once (two cores gain nothing from it). A video takes the lock frame by frame, so
    a live stream and a video take turns rather than wait for each other to finish.
    """

    def __init__(self, detector: FaceMaskDetector):
        self.detector = detector
        self._lock = threading.Lock()

    def detect(self, image: Image.Image, max_side: int | None = None) -> list[Detection]:
        with self._lock:
            return self.detector.detect(image, max_side)

    def annotate(self, image: Image.Image, max_side: int | None = None) -> tuple[Image.Image, list[Detection]]:
        """As FaceMaskDetector.annotate; the faces are drawn outside the lock, which only the models need."""
        detections = self.detect(image, max_side)
        return self.draw(image, detections), detections

    def draw(self, image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
        """As FaceMaskDetector.draw, outside the lock: only the models need it (facemask.video draws meanwhile)."""
        return self.detector.draw(image, detections)

    def find_faces(self, image: Image.Image, max_side: int | None = None,
                   min_score: float | None = None) -> list[tuple[Box, float]]:
        """As FaceMaskDetector.find_faces: the tracker looks for faces and classifies them in two steps."""
        with self._lock:
            return self.detector.find_faces(image, max_side, min_score=min_score)

    def classify(self, image: Image.Image, faces: list[tuple[Box, float]]) -> list[Detection]:
        with self._lock:
            return self.detector.classify(image, faces)


class LiveWatch:
    """One viewer's stream: persons followed across its frames (as facemask.watch follows them) and counted.

    `start_score` is the face detector's score from which a face may start a track (fainter faces, from
    FAINT_SHARE of it, only continue one), `threshold` the decision threshold on a person's mean P(no-mask).
    Times are the frames' arrival (time.monotonic()): a browser sends them as fast as they are answered.
    """

    def __init__(self, start_score: float, threshold: float):
        self.start_score = start_score
        self.people = PersonTracker(LibraryTracks(DEFAULT_TRACKER, LIVE_FPS, DEFAULT_LOST_SECONDS, start_score),
                                    threshold, min_frames=LIVE_MIN_FRAMES)
        self.ended = {"mask": 0, "no-mask": 0}  # persons whose visit has ended, by the label of their whole visit
        self.last_frame = time.monotonic()

    def is_over(self, now: float) -> bool:
        """Whether a frame arriving `now` starts a new stream (after a long pause) rather than continuing this one."""
        return now - self.last_frame > NEW_STREAM_SECONDS

    def frame(self, detector: SerialDetector, image: Image.Image,
              max_side: int = VIDEO_MAX_SIDE) -> tuple[Image.Image, str]:
        """One frame: faces tracked and classified; the frame with each person boxed and numbered, and the summary."""
        now = self.last_frame = time.monotonic()
        seen, ended = track_frame(self.people, detector, image, timestamp=now, wall=time.time(), pts=None,
                                  max_side=max_side, min_score=FAINT_SHARE * self.start_score)
        for person in ended:
            self.ended[person.label(self.people.threshold)] += 1
        return draw_people(image, self.people, [person for person, _ in seen]), self.summary()

    def counts(self) -> dict[str, int]:
        """People in view now, and seen since the stream started: in all, with a mask, without (those in view
        by the label of their frames so far)."""
        present = self.people.present()
        no_mask = self.ended["no-mask"] + sum(p.label(self.people.threshold) == "no-mask" for p in present)
        seen = self.ended["mask"] + self.ended["no-mask"] + len(present)
        return {"now": len(present), "seen": seen, "mask": seen - no_mask, "no-mask": no_mask}

    def summary(self) -> str:
        counts = self.counts()
        people = "person" if counts["seen"] == 1 else "people"
        return (f"{counts['now']} in view now; {counts['seen']} {people} seen since the stream started: "
                f"{counts['mask']} with a mask (green), {counts['no-mask']} without (red).")


def read_frame(frame: str | bytes, limits: VideoLimits, name: str = LIVE_FRAME_NAME) -> Image.Image:
    """A streamed frame as an RGB image: refused (ImageError) over the video frame pixel limit
    before it is decoded, and scaled down to the video frame size limit."""
    max_pixels = min(MAX_PIXELS, limits.max_frame_pixels or MAX_PIXELS)
    return shrink(load_image(frame, max_pixels=max_pixels, name=name), limits.max_frame_side)


def jpeg_data_url(image: Image.Image, quality: int = JPEG_QUALITY) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def inline_output(output: gr.Image) -> gr.Image:
    """Make an output gr.Image send PIL images back as JPEG data URLs, written nowhere.

    A record with a URL and no path is left alone by Gradio's file handling (it is how Gradio
    itself sends SVGs). Patched on the instance: a subclass would make Gradio write a .pyi stub
    into this package.
    """

    def postprocess(value: Image.Image | None) -> ImageData | None:
        return None if value is None else ImageData(url=jpeg_data_url(value), mime_type="image/jpeg")

    output.postprocess = postprocess
    return output

