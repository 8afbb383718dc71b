"""The web page: a Gradio app where a webcam snapshot, a photo or a video comes back boxed.

Three tabs share one FaceMaskDetector (facemask.detect): Photo (a webcam snapshot or an upload is
detected as soon as it arrives -> the annotated photo, its faces numbered as in the table of faces
below it, and a summary line counting faces with and without a mask), Video (webcam recording or
upload -> the annotated H.264 MP4, without its sound, with a progress bar) and Live (the webcam
streamed, boxes drawn on every frame the machine keeps up with, each person followed across frames
and numbered, with a running count of the people seen; facemask.app.live). The endpoints are
also an API for gradio_client, named after their functions: /detect_photo, /detect_video and the
stream /detect_live.

Bad input (not an image or video, truncated, a decompression bomb, over a limit) raises gr.Error,
which the page shows as a readable message and the API as an AppError; the server keeps serving.
Only files uploaded to the app are read, and no URL is followed (facemask.app.uploads). Every input
is bounded (AppLimits): bytes, pixels, video seconds, frames, frame rate and frame size, and a live
stream's duration. Photos and videos share one lane with a single worker, so they run in turn;
one live stream at a time has a lane of its own, so that it does not hold them up for its whole
time limit. The classifier and the face detector are shared by every tab and run one call at a time
(SerialDetector): two cores gain nothing from running them side by side.

It works offline: analytics and Hugging Face Hub calls are switched off before gradio is imported
(facemask.app's __init__), and the default theme's fonts are served by the app itself. Each result is a file of its
own (`result_path`). `serve_until_stopped` closes the app on Ctrl+C or SIGTERM (facemask.cli): a video
in progress ends at its next frame and the server closes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd
from PIL import Image
from starlette.middleware import Middleware

from facemask import remove_tree, save_atomically
from facemask.app.live import LIVE_FRAME_NAME, STREAM_EVERY, LiveWatch, SerialDetector, inline_output, read_frame
from facemask.app.server import release_memory
from facemask.app.uploads import (
    DATA_URL_NAME,
    REFUSED,
    RequestGuard,
    data_url_bytes,
    is_pasted,
    is_uploaded,
    max_body_bytes,
)
from facemask.cli import Interrupted
from facemask.detection import Detection, FaceMaskDetector
from facemask.images import MAX_PIXELS, ImageError, load_image
from facemask.video import VIDEO_MAX_SIDE, VideoError, VideoLimits, annotate_video

FACE_COLUMNS = ["face", "label", "P(mask)", "P(no-mask)", "box (x0, y0, x1, y1)"]
# Uploads and results in the app's cache older than an hour are deleted every half hour (and all at exit):
# by Gradio (the files it knows of) and by CacheSweeper (all of them).
CACHE_CLEANUP = (1800, 3600)
SHUTDOWN_GRACE = 0.5  # seconds the server waits for open connections once stopping
# A minute of video, at most 30 frames/s of it, frames up to 4K UHD, processed at Full HD at most: the
# worker's time on one video is bounded, whatever the file's size says.
DEFAULT_VIDEO_LIMITS = VideoLimits(max_seconds=60, max_fps=30, max_frame_pixels=3840 * 2160, max_frames=1800,
                                   max_frame_side=1920)


def guard_photo_input(photo_input: gr.Image, max_upload_bytes: int) -> gr.Image:
    """Make a gr.Image hand over an uploaded file's path unopened, or a data URL's bytes, or refuse.

    A path outside Gradio's upload folder is refused by its text alone (facemask.app.uploads), before
    anything touches it. A base64 data URL is refused by its length before it is decoded; Gradio
    would decode it, save it as WebP in its cache and only then let the pixel limit refuse it.
    gr.Image's own preprocessing would also open an uploaded file with Pillow before our function
    runs, so a non-image would fail there with a message the page hides: facemask.images.load_image
    judges every file instead. This patches the one instance: Gradio writes a .pyi stub next to the
    source file of every component subclass, and an app must not write into its own package.
    """

    def preprocess(payload) -> str | bytes | None:
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):  # Gradio looks at a data URL first, so do we
            try:
                return data_url_bytes(payload.url, max_upload_bytes)
            except ImageError as error:
                raise user_error(str(error)) from error
        if not is_uploaded(payload.path):
            raise user_error(REFUSED)
        return str(payload.path)

    photo_input.preprocess = preprocess
    return photo_input


def guard_video_input(video_input: gr.Video) -> gr.Video:
    """Make a gr.Video refuse, by its text alone, a path outside Gradio's upload folder."""
    default_preprocess = video_input.preprocess

    def preprocess(payload) -> str | None:
        if payload is not None and not is_uploaded(payload.path):
            raise user_error(REFUSED)
        return default_preprocess(payload)

    video_input.preprocess = preprocess
    return video_input


def upload_name(path: str | Path) -> str:
    """The name the user knows: Gradio keeps the original file name inside its cache folder."""
    return Path(path).name


def readable(error: Exception | str, path: str | Path) -> str:
    """An error message naming the uploaded file, not the server's cache path."""
    return str(error).replace(str(path), upload_name(path))


def user_error(message: str) -> gr.Error:
    """A message for the page; the input was wrong, not the server, so no traceback in the log."""
    return gr.Error(message, print_exception=False)


def check_size(path: str | Path, max_upload_mb: float) -> None:
    size = Path(path).stat().st_size
    if size > max_upload_mb * 1024 * 1024:
        raise user_error(f"{upload_name(path)}: {size / 1024 / 1024:.1f} MB is over the {max_upload_mb:g} MB limit")


def result_path(output: gr.components.Component, name: str) -> Path:
    """A new path for a result in the output's cache folder, in a folder of its own.

    Gradio names a result after a hash of its content and rewrites that file in place: two users
    sending the same photo would share one file, half-written while the other downloads it.
    """
    folder = Path(output.GRADIO_CACHE) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder / name


def faces_table(detections: Sequence[Detection]) -> pd.DataFrame:
    """One row per face, in the detector's order; probabilities rounded for reading."""
    rows = [[i, d.label, round(d.p_mask, 3), round(d.p_no_mask, 3), ", ".join(str(v) for v in d.box)]
            for i, d in enumerate(detections, start=1)]
    return pd.DataFrame(rows, columns=FACE_COLUMNS)


def mask_summary(detections: Sequence[Detection], where: str = "photo") -> str:
    """The summary line: how many faces, how many with a mask and how many without."""
    if not detections:
        return f"No face found in this {where}. Try a closer, well-lit, front view."
    masks = sum(d.label == "mask" for d in detections)
    faces = f"{len(detections)} face{'s' if len(detections) != 1 else ''}"
    return f"{faces}: {masks} with a mask (green), {len(detections) - masks} without (red)."


@dataclass(frozen=True)
class AppLimits:
    """Everything the app bounds; `facemask app` options set them."""

    max_upload_mb: float = 50  # any photo or video, uploaded or sent as a data URL
    video: VideoLimits = DEFAULT_VIDEO_LIMITS
    queue_size: int = 32  # requests waiting; more are told the queue is full
    live_seconds: int = 60  # one live stream's run; the viewer starts another, behind anyone waiting

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def describe(self) -> str:
        video = self.video
        return (f"Files up to {self.max_upload_mb:g} MB and {MAX_PIXELS / 1e6:g} megapixels; videos up to "
                f"{video.max_seconds:g} s and {video.max_frames:,} frames, frames up to {video.max_frame_pixels:,} "
                f"pixels, processed at {video.max_fps:g} frames/s at most and {video.max_frame_side} px on the long "
                f"side; the sound track is not kept. A live stream runs {self.live_seconds} s at a time.")


def video_status(stats: dict) -> str:
    """What was done to a video, in a line: frames, rate, faces, and anything dropped on the way."""
    status = (f"{stats['frames']} frames ({stats['seconds_source']:.1f} s at {stats['fps_output']:.3g} fps), "
              f"{stats['faces']} face boxes drawn, processed at {stats['processing_fps']:.1f} frames/s.")
    if stats["sampled"]:
        status += f" Sampled from {stats['fps_source']:.3g} fps."
    if stats["has_audio"]:
        status += " The sound track is not kept."
    if stats["warning"]:
        status += f" Warning: {stats['warning']}"
    return status


def build_app(detector: FaceMaskDetector, limits: AppLimits = AppLimits()) -> gr.Blocks:  # noqa: B008 (frozen)
    """The three-tab page; photos and videos run one at a time, beside one live stream. Launch it with `launch`."""
    shared = SerialDetector(detector)  # the photo, video and live lanes take turns on it

    def read_input(value: str | bytes, read: Callable[..., Image.Image], pasted_name: str) -> Image.Image:
        """`read(value, name=...)` of an uploaded file (its size checked first) or of pasted bytes; gr.Error if bad.

        A large pasted image arrives as a file RequestGuard wrote (facemask.app.uploads): read once, it goes.
        """
        uploaded = isinstance(value, str)
        try:
            if uploaded:
                check_size(value, limits.max_upload_mb)
            return read(value, name=upload_name(value) if uploaded else pasted_name)
        except ImageError as error:
            raise user_error(readable(error, value) if uploaded else str(error)) from error
        finally:
            if uploaded and is_pasted(value):
                remove_tree(Path(value).parent)

    def detect_photo(photo: str | bytes | None) -> tuple[str | None, pd.DataFrame, str]:
        """Boxes on every face of a photo (as a JPEG file of its own), a table of them and a one-line summary."""
        if photo is None:  # the photo was cleared (detection runs on every change): clear the results
            return None, faces_table([]), "No photo yet: take a webcam snapshot or upload a photo."
        try:
            image = read_input(photo, load_image, DATA_URL_NAME)
            annotated, detections = shared.annotate(image)
            result = result_path(photo_output, "annotated.jpg")
            save_atomically(result, lambda target: annotated.save(target, format="JPEG"))
            return str(result), faces_table(detections), mask_summary(detections)
        finally:
            release_memory()

    def detect_video(video: str | None, progress: gr.Progress = gr.Progress()) -> tuple[str, str]:  # noqa: B008
        """The video with boxes on every frame, as an H.264 MP4, and a one-line summary."""
        if video is None:
            raise user_error("No video yet: record one with the webcam or upload a video first.")
        check_size(video, limits.max_upload_mb)
        progress(0, desc="Reading the video")
        result = result_path(video_output, f"{Path(video).stem}_annotated.mp4")
        try:
            stats = annotate_video(
                Path(video), result, shared, limits.video,
                progress=lambda done, total: progress((done, total), desc="Annotating frames", unit="frames"))
        except VideoError as error:
            raise user_error(readable(error, video)) from error
        except Interrupted as stop:  # the app is stopping (facemask.cli): a gr.Error, not the worker's end
            raise user_error("The app is stopping; send the video again once it is back.") from stop
        finally:
            if not result.exists():
                remove_tree(result.parent)
            release_memory()
        if stats["warning"]:
            stats["warning"] = readable(stats["warning"], video)
        return str(result), video_status(stats)

    def detect_live(frame: str | bytes | None, watch: LiveWatch | None) -> tuple[Image.Image | None, str, LiveWatch]:
        """One webcam frame with each person boxed and numbered, the running counts, and the stream's tracker
        (the session's state); called for each frame while the stream runs."""
        if frame is None:
            return None, "Waiting for the webcam.", watch
        # A path is an uploaded file, from an API client: a browser sends data URLs.
        image = read_input(frame, partial(read_frame, limits=limits.video), LIVE_FRAME_NAME)
        if watch is None or watch.is_over(time.monotonic()):
            watch = LiveWatch(start_score=detector.face_threshold, threshold=detector.no_mask_threshold)
        annotated, summary = watch.frame(shared, image, VIDEO_MAX_SIDE)  # a small copy, as video frames
        return annotated, summary, watch

    with gr.Blocks(title="Face mask detection", delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(
            "# Face mask detection\n"
            "Every face found gets a box: **green** for a mask, **red** for no mask. "
            f"{limits.describe()}")
        with gr.Tab("Photo"):
            with gr.Row():
                photo_input = guard_photo_input(gr.Image(sources=["webcam", "upload"], type="filepath",
                                                         label="Photo", elem_id="photo-input"),
                                                limits.max_upload_bytes)
                photo_output = gr.Image(type="pil", format="jpeg", label="Annotated photo", interactive=False,
                                        elem_id="photo-output")
            photo_status_box = gr.Textbox(label="Summary", interactive=False, elem_id="photo-status")
            faces = gr.Dataframe(headers=FACE_COLUMNS, label="Faces", interactive=False, elem_id="faces")
        with gr.Tab("Video"):
            with gr.Row():
                # include_audio=True: Gradio would otherwise strip the sound with a system ffmpeg we do not need.
                video_input = guard_video_input(gr.Video(sources=["webcam", "upload"], include_audio=True,
                                                         label="Video", elem_id="video-input"))
                video_output = gr.Video(label="Annotated video", interactive=False, elem_id="video-output")
            video_button = gr.Button("Detect faces in every frame", variant="primary", elem_id="video-button")
            video_status_box = gr.Textbox(label="Status", interactive=False, elem_id="video-status")
        with gr.Tab("Live"):
            with gr.Row():
                live_input = guard_photo_input(gr.Image(sources=["webcam"], streaming=True, label="Webcam",
                                                        elem_id="live-input"), limits.max_upload_bytes)
                live_output = inline_output(gr.Image(label="Live detection", interactive=False,
                                                     elem_id="live-output"))
            live_status_box = gr.Textbox(label="Summary", interactive=False, elem_id="live-status")
            live_watch = gr.State(None)  # the viewer's LiveWatch: its persons tracked and counted
        # One shared worker for photos and videos: the detector is one model on two cores. A snapshot or
        # an upload fires "change" (a cleared photo too), so no button is needed.
        photo_input.change(detect_photo, photo_input, [photo_output, faces, photo_status_box],
                           api_name="detect_photo", concurrency_id="detector")
        video_button.click(detect_video, video_input, [video_output, video_status_box],
                           api_name="detect_video", concurrency_id="detector")
        # One live stream at a time, for at most live_seconds; Gradio keeps only the newest frame sent
        # while one is being processed. No progress overlay: it would blink on every frame.
        live_input.stream(detect_live, [live_input, live_watch], [live_output, live_status_box, live_watch],
                          api_name="detect_live",
                          stream_every=STREAM_EVERY, time_limit=limits.live_seconds, concurrency_limit=1,
                          concurrency_id="live", show_progress="hidden")
    demo.queue(default_concurrency_limit=1, max_size=limits.queue_size)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           max_upload_mb: float = 50) -> tuple[str, str | None]:
    """Start serving in the background; returns the local URL and the public one (with share).

    Port 0 (or None) serves on the first free port from 7860, which the URL names: Gradio binds each
    port to find out (it cannot serve on one the system picks, as port 0 means to a socket), and
    moves on to the next when another process takes one first, so two apps starting at once never
    end up on one port.
    """
    max_bytes = int(max_upload_mb * 1024 * 1024)
    # RequestGuard sits in front of Gradio: it caps request bodies (data URLs included) and refuses
    # file records that are not uploads before Gradio reads or downloads them. max_file_size makes
    # Gradio refuse oversized uploads before they are stored; ssr_mode=False keeps it from looking
    # for Node.js; run_history=False keeps people's photos out of the browser's storage (and the
    # page from offering to copy them to a Hugging Face bucket).
    _, local_url, share_url = demo.launch(
        server_name=host, server_port=port or None, share=share, max_file_size=max_bytes,
        app_kwargs={"middleware": [Middleware(RequestGuard, max_body=max_body_bytes(max_bytes), max_upload=max_bytes)]},
        ssr_mode=False, run_history=False, quiet=True, prevent_thread_lock=True)
    return local_url, share_url


def serve_until_stopped(demo: gr.Blocks) -> None:
    """Serve until Ctrl+C (or SIGTERM), then close the app as demo.close does: queue, connections, server.

    Not demo.block_thread(): it stops the HTTP server alone. With a stream in the app (the Live tab),
    every page and API client holds a heartbeat connection open that only demo.close ends; the server
    would wait on them past its 5 s shutdown and the process exit without deleting its cached files.
    """
    try:
        while demo.is_running:
            time.sleep(0.1)
    except KeyboardInterrupt:  # facemask.cli.Interrupted, for Ctrl+C and SIGTERM alike
        pass
    if demo.server is not None:
        # A client following a request (an event stream) holds its connection open until it goes, and
        # uvicorn waits for every connection: the close gave up after 5 s. Now it cancels them after this.
        demo.server.config.timeout_graceful_shutdown = SHUTDOWN_GRACE
    demo.close(verbose=False)
