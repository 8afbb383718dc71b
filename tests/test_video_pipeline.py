"""The video path's three threads (facemask.video): the same frames as one after the other, and a failure
or a stop anywhere ends them all at once, with one error naming the file and nothing left behind."""

from __future__ import annotations

import contextvars
import threading
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from conftest import RecordingModel, write_clip, write_plain_clip
from PIL import Image

import facemask.video
from facemask import cli, stages
from facemask.cli import Interrupted
from facemask.detection import FaceMaskDetector
from facemask.detectors import make_face_detector
from facemask.video import VIDEO_MAX_SIDE, VideoError, VideoLimits, annotate_video, even_size, open_writer


class Recording:
    """Wraps a FaceMaskDetector: keeps what each call was given and gave, and can fail or stop on a frame."""

    def __init__(self, detector: FaceMaskDetector, fail_detect: int = 0, fail_draw: int = 0, stop_at: int = 0,
                 draw_seconds: float = 0.0):
        self.detector = detector
        self.fail_detect, self.fail_draw, self.stop_at = fail_detect, fail_draw, stop_at
        self.draw_seconds = draw_seconds  # a slow writer: still drawing when detection fails
        self.detected: list[list] = []
        self.drawn: list[tuple[np.ndarray, list]] = []
        self.threads: set[str] = set()

    def detect(self, image: Image.Image, max_side: int | None = None) -> list:
        self.threads.add(f"detect:{threading.current_thread().name}")
        if len(self.detected) + 1 == self.fail_detect:
            raise RuntimeError("the model failed")
        if len(self.detected) + 1 == self.stop_at:
            cli.STOP.set()  # as a SIGTERM does in the web app, whose video runs in a worker thread
        self.detected.append(self.detector.detect(image, max_side))
        return self.detected[-1]

    def draw(self, image: Image.Image, detections: list) -> Image.Image:
        self.threads.add(f"draw:{threading.current_thread().name}")
        if len(self.drawn) + 1 == self.fail_draw:
            raise OSError("no space left on device")
        time.sleep(self.draw_seconds)
        self.drawn.append((np.asarray(image).copy(), list(detections)))
        return self.detector.draw(image, detections)


class Concurrent(Recording):
    """A Recording that says it may detect several frames at once (as FaceMaskDetector does on ONNX Runtime),
    each call taking a random few milliseconds, so that frames finish out of order; it fails on the frame
    equal to `fail_on`."""

    thread_safe = True

    def __init__(self, detector: FaceMaskDetector, fail_on: np.ndarray | None = None):
        super().__init__(detector)
        self.fail_on = fail_on
        self.rng = np.random.default_rng(0)
        self.lock = threading.Lock()

    def detect(self, image: Image.Image, max_side: int | None = None) -> list:
        with self.lock:
            self.threads.add(f"detect:{threading.current_thread().name}")
            delay = self.rng.uniform(0, 0.02)
        time.sleep(delay)
        if self.fail_on is not None and np.array_equal(np.asarray(image), self.fail_on):
            raise RuntimeError("the model failed")
        found = self.detector.detect(image, max_side)
        with self.lock:
            self.detected.append(found)
        return found


def read_all(path: Path) -> list[np.ndarray]:
    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        return list(iter(reader))
    finally:
        reader.close()


def pipeline_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("facemask-video")]


@pytest.fixture(scope="module")
def detector() -> FaceMaskDetector:
    """The served face detector (CenterFace) with a classifier double whose labels follow the pixels."""
    return FaceMaskDetector(RecordingModel(), face_detector=make_face_detector())


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "astronaut.mp4", frames=40, fps=20)


@pytest.fixture
def stop_cleared():
    yield
    cli.STOP.clear()


def test_the_threads_give_the_frames_of_a_serial_run(tmp_path, clip, detector):
    recording = Recording(detector)
    stats = annotate_video(clip, tmp_path / "threaded.mp4", recording)
    # Serially, here: decode every frame, detect, draw, encode with the same encoder settings.
    frames = [even_size(frame) for frame in read_all(clip)]
    serial = [detector.detect(Image.fromarray(frame), VIDEO_MAX_SIDE) for frame in frames]
    with open_writer(tmp_path / "serial.mp4", 20) as writer:
        for frame, found in zip(frames, serial, strict=True):
            writer.append_data(np.asarray(detector.draw(Image.fromarray(frame), found)))
    assert stats["frames"] == len(frames) == 40 and stats["faces"] == sum(map(len, serial)) >= 40
    assert recording.detected == serial  # frame by frame, boxes, scores and probabilities alike
    # Each frame was drawn, in order, with its own faces.
    assert [found for _, found in recording.drawn] == serial
    assert all(np.array_equal(image, frame) for (image, _), frame in zip(recording.drawn, frames, strict=True))
    threaded_frames = read_all(tmp_path / "threaded.mp4")
    assert len(threaded_frames) == 40
    assert all(np.array_equal(a, b) for a, b in zip(threaded_frames, read_all(tmp_path / "serial.mp4"), strict=True))
    # Detection ran in the calling thread, drawing in the writer's; none is left running.
    assert recording.threads == {f"detect:{threading.current_thread().name}", "draw:facemask-video-write_stage"}
    assert pipeline_threads() == []


def test_a_thread_safe_detector_has_two_frames_detected_at_once_and_the_frames_stay_in_order(tmp_path, clip, detector):
    frames = [even_size(frame) for frame in read_all(clip)]
    serial = [detector.detect(Image.fromarray(frame), VIDEO_MAX_SIDE) for frame in frames]
    concurrent = Concurrent(detector)
    stats = annotate_video(clip, tmp_path / "concurrent.mp4", concurrent)
    assert stats["frames"] == 40 and stats["faces"] == sum(map(len, serial))
    assert concurrent.threads == {"detect:facemask-video-detect_0", "detect:facemask-video-detect_1",
                                  "draw:facemask-video-write_stage"}
    assert [found for _, found in concurrent.drawn] == serial  # in the frames' order, whatever finished first
    assert all(np.array_equal(image, frame) for (image, _), frame in zip(concurrent.drawn, frames, strict=True))
    assert pipeline_threads() == []
    # The served detector says so only on ONNX Runtime (CenterFace's session and an .onnx classifier).
    assert not detector.thread_safe  # its classifier is a test double, not an ONNX Runtime session
    # A failing frame is named by its place in the video, however the frames around it finished.
    with pytest.raises(VideoError, match=r"astronaut\.mp4: frame 5 could not be annotated \(RuntimeError: "):
        annotate_video(clip, tmp_path / "out" / "failed.mp4", Concurrent(detector, fail_on=frames[4]))
    assert list((tmp_path / "out").iterdir()) == [] and pipeline_threads() == []


@pytest.mark.parametrize(("failure", "message"), [
    ({"fail_detect": 5, "draw_seconds": 0.2},
     r"astronaut\.mp4: frame 5 could not be annotated \(RuntimeError: the model failed\)"),
    ({"fail_draw": 3}, r"astronaut\.mp4: frame 3 could not be drawn or encoded \(OSError: no space left on device\)"),
], ids=["detection", "drawing"])
def test_a_failing_frame_stops_every_stage_with_one_error_and_no_file(tmp_path, clip, detector, failure, message):
    recording = Recording(detector, **failure)
    out = tmp_path / "out"
    with pytest.raises(VideoError, match=message) as raised:
        annotate_video(clip, out / "annotated.mp4", recording)
    assert isinstance(raised.value.__cause__, (RuntimeError, OSError))  # the original error, for a traceback
    assert list(out.iterdir()) == []  # no partial file
    assert pipeline_threads() == []
    # The other stages stopped within a few frames (the queues hold 4 each), not at the end of the clip.
    assert len(recording.detected) < 4 + 3 * stages.QUEUE_FRAMES < 40


def test_a_decoder_failing_mid_stream_stops_the_pipeline(tmp_path, clip, detector, monkeypatch):
    class FailingReader:
        """imageio's reader of the clip, whose ffmpeg gives up after 6 frames as on damaged data."""

        def __init__(self, *args, **kwargs):
            self.reader = real_reader(*args, **kwargs)

        def __iter__(self):
            for index, frame in enumerate(self.reader):
                if index == 6:
                    raise OSError("ffmpeg: Invalid NAL unit size")
                yield frame

        def close(self):
            self.reader.close()

    real_reader = imageio.get_reader
    monkeypatch.setattr(facemask.video.imageio, "get_reader", FailingReader)
    recording = Recording(detector)
    with pytest.raises(VideoError, match=r"astronaut\.mp4: damaged video data \(ffmpeg: Invalid NAL unit size\)"):
        annotate_video(clip, tmp_path / "out" / "annotated.mp4", recording)
    assert list((tmp_path / "out").iterdir()) == [] and pipeline_threads() == []
    assert len(recording.detected) <= 6


def test_a_stop_ends_every_stage_and_leaves_no_file(tmp_path, detector, stop_cleared):
    """In the web app the video runs in a worker thread: SIGTERM sets facemask.cli.STOP, which each stage watches."""
    long_clip = write_plain_clip(tmp_path / "long.mp4", frames=500, fps=25, size=(320, 240))
    recording = Recording(detector, stop_at=10)
    with pytest.raises(Interrupted):
        annotate_video(long_clip, tmp_path / "out" / "annotated.mp4", recording)
    assert list((tmp_path / "out").iterdir()) == [] and pipeline_threads() == []
    assert len(recording.detected) == 10 and len(recording.drawn) <= 10


def test_the_frame_limit_read_while_decoding_ends_every_stage(tmp_path, detector):
    # A raw H.264 stream has no duration in its header: its frame limit is found by the reader thread.
    source = write_clip(tmp_path / "raw.h264", frames=30, codec="libx264", output_params=["-f", "h264"])
    recording = Recording(detector)
    with pytest.raises(VideoError, match=r"raw\.h264: the video has over 5 frames, the limit"):
        annotate_video(source, tmp_path / "out" / "out.mp4", recording, VideoLimits(max_frames=5))
    assert list((tmp_path / "out").iterdir()) == [] and pipeline_threads() == []
    assert len(recording.detected) <= 5


def test_progress_is_reported_from_the_writer_with_the_callers_context(tmp_path, clip, detector):
    """Gradio's progress bar finds its request through context variables: the writer thread must see them."""
    request = contextvars.ContextVar("request", default=None)
    seen = []
    request.set("the caller's request")
    annotate_video(clip, tmp_path / "out.mp4", detector,
                   progress=lambda done, total: seen.append((done, total, request.get())))
    assert seen == [(i, 40, "the caller's request") for i in range(1, 41)]
