"""The web app's Live tab: webcam frames in, the same frames with boxed faces out, as fast as the machine goes.

Gradio streams the webcam as JPEG data URLs, one every `stream_every` seconds while the page is
not waiting for an answer, and the server keeps only the newest frame it was sent (each one
overwrites the last): a slow machine drops frames, it never queues them up. A frame is checked
like any upload (facemask.uploads, then facemask.images.load_image with the video frame pixel
limit) before it is decoded, scaled down to the video frame size limit like video frames, and its
faces are looked for on a copy at most VIDEO_MAX_SIDE large, as the video path does.

Frames go back inline, as JPEG data URLs, not as files: Gradio would otherwise write every frame
into its cache, thousands of files an hour for one viewer.
"""

from __future__ import annotations

import base64
import io
import threading

import gradio as gr
from gradio.data_classes import ImageData
from PIL import Image

from facemask.detect import Detection, FaceMaskDetector, draw_detections
from facemask.images import MAX_PIXELS, load_image, shrink
from facemask.video import VideoLimits

LIVE_FRAME_NAME = "the webcam frame"
STREAM_EVERY = 0.1  # seconds between frames the page sends at most; the server answers as fast as it can
JPEG_QUALITY = 80  # frames sent back: about 30 kB at 640x480, quick to encode and to show


class SerialDetector:
    """One FaceMaskDetector shared by the app's request lanes, used by one call at a time.

    The Live tab has a lane of its own, so that a live viewer does not hold up photos and videos
    for its whole time limit; this lock still keeps the shared Keras model and MTCNN from running
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
        return draw_detections(image, detections), detections


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

