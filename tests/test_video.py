"""Video: every frame annotated into a browser-playable MP4, bad and over-long files refused cleanly."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from facemask import detect
from facemask.detect import FaceMaskDetector
from facemask.detectors import MTCNNFaceDetector
from facemask.video import VideoError, annotate_video


class FakeModel:
    """A classifier double (raw RGB 224x224 in, 2 probabilities out) that records each batch."""

    input_shape = (None, 224, 224, 3)
    output_shape = (None, 2)

    def __init__(self):
        self.batch_sizes: list[int] = []

    def predict_on_batch(self, batch):
        self.batch_sizes.append(len(batch))
        return np.tile([[0.3, 0.7]], (len(batch), 1)).astype(np.float32)


class FixedFaces:
    """A face detector double: the same boxes on every frame."""

    def __init__(self, faces):
        self.faces = faces
        self.calls = 0
        self.shapes: set[tuple[int, ...]] = set()

    def find_faces(self, rgb):
        self.calls += 1
        self.shapes.add(rgb.shape)
        return list(self.faces)


def write_clip(path: Path, frames: int = 12, fps: float = 12, size: tuple[int, int] = (320, 240),
               codec: str = "libx264") -> Path:
    """A short clip of the astronaut panning a few pixels per frame (a real face, offline)."""
    width, height = size
    astronaut = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((width + 2 * frames, width + 2 * frames)))
    with imageio.get_writer(path, format="FFMPEG", fps=fps, codec=codec, macro_block_size=1,
                            ffmpeg_log_level="error") as writer:
        for i in range(frames):
            writer.append_data(astronaut[i: i + height, 2 * i: 2 * i + width])
    return path


def read_all(path: Path) -> tuple[list[np.ndarray], dict]:
    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        return list(iter(reader)), reader.get_meta_data()
    finally:
        reader.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "astronaut.mp4")


def test_every_frame_is_annotated_into_a_browser_playable_mp4(tmp_path, clip):
    model = FakeModel()
    detector = FaceMaskDetector(model, face_detector=MTCNNFaceDetector())
    progress = []
    stats = annotate_video(clip, tmp_path / "annotated.mp4", detector,
                           progress=lambda done, total: progress.append((done, total)))
    frames, meta = read_all(tmp_path / "annotated.mp4")
    assert len(frames) == stats["frames"] == 12
    assert meta["fps"] == stats["fps_source"] == 12
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p") and meta["size"] == (320, 240)
    assert stats["seconds_source"] == pytest.approx(1.0) and stats["processing_fps"] > 0
    assert progress == [(i, 12) for i in range(1, 13)]
    # The astronaut is found on every frame, and her faces go through one classifier call per frame.
    assert model.batch_sizes == [1] * 12 and stats["faces"] == 12
    # Red boxes (the double says no-mask) are drawn: some frame pixels are strongly red.
    red = (frames[0][..., 0] > 150) & (frames[0][..., 1] < 80) & (frames[0][..., 2] < 80)
    assert red.sum() > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4"]  # no temporary left behind


@pytest.mark.parametrize(("suffix", "codec"), [(".webm", "libvpx"), (".mov", "libx264"), (".avi", "mpeg4")])
def test_other_containers_are_read(tmp_path, suffix, codec):
    source = write_clip(tmp_path / f"clip{suffix}", frames=5, fps=10, codec=codec)
    stats = annotate_video(source, tmp_path / "out.mp4", FaceMaskDetector(FakeModel(), face_detector=FixedFaces([])))
    frames, meta = read_all(tmp_path / "out.mp4")
    assert stats["frames"] == len(frames) == 5 and meta["fps"] == 10


def test_odd_frame_sizes_become_even(tmp_path):
    source = write_clip(tmp_path / "odd.mp4", frames=3, size=(161, 121), codec="mpeg4")
    detector = FaceMaskDetector(FakeModel(), face_detector=FixedFaces([((10, 10, 60, 70), 0.99)]))
    annotate_video(source, tmp_path / "out.mp4", detector)
    frames, meta = read_all(tmp_path / "out.mp4")
    assert meta["size"] == (160, 120) and len(frames) == 3


def test_faces_are_looked_for_on_a_smaller_copy_of_each_frame(tmp_path):
    source = write_clip(tmp_path / "vga.mp4", frames=2, size=(640, 480))
    faces = FixedFaces([((50, 40, 100, 100), 0.99)])  # in the pixels of the copy it is given
    stats = annotate_video(source, tmp_path / "default.mp4", FaceMaskDetector(FakeModel(), face_detector=faces))
    assert faces.shapes == {(240, 320, 3)} and stats["faces"] == 2
    faces.shapes.clear()
    annotate_video(source, tmp_path / "full.mp4", FaceMaskDetector(FakeModel(), face_detector=faces), max_side=None)
    assert faces.shapes == {(480, 640, 3)}  # None: the detector's own max_side (1024) keeps the full frame
    # The box found on the half-size copy is drawn at twice its size on the full frame: its left edge,
    # 2 px wide, is red at x = 100, 101 from y = 80 to 200.
    edge = read_all(tmp_path / "default.mp4")[0][0][90:190, 100:102].astype(int)
    assert edge[..., 0].mean() > 150 and edge[..., 1].mean() < 80


def test_not_a_video_is_refused_without_leaving_files(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video at all")
    out = tmp_path / "out"
    detector = FaceMaskDetector(FakeModel(), face_detector=FixedFaces([]))
    with pytest.raises(VideoError, match="notes.mp4: not a readable video"):
        annotate_video(tmp_path / "notes.mp4", out / "annotated.mp4", detector)
    with pytest.raises(VideoError, match="missing.mp4: file not found"):
        annotate_video(tmp_path / "missing.mp4", out / "annotated.mp4", detector)
    assert not out.exists() or list(out.iterdir()) == []


def test_truncated_video_is_refused_without_leaving_files(tmp_path, clip):
    whole = clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    detector = FaceMaskDetector(FakeModel(), face_detector=FixedFaces([]))
    with pytest.raises(VideoError, match="cut.mp4"):
        annotate_video(tmp_path / "cut.mp4", tmp_path / "out" / "annotated.mp4", detector)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_too_long_video_is_refused_before_any_frame(tmp_path, clip):
    faces = FixedFaces([])
    with pytest.raises(VideoError, match=r"astronaut.mp4: the video lasts 1.0 s, over the 0.5 s limit"):
        annotate_video(clip, tmp_path / "annotated.mp4", FaceMaskDetector(FakeModel(), face_detector=faces),
                       max_seconds=0.5)
    assert faces.calls == 0 and list(tmp_path.iterdir()) == []


def test_cli_annotates_a_video(tmp_path, clip, capsys, monkeypatch):
    # The command line on a video, with the classifier swapped for the double to keep this test quick.
    monkeypatch.setattr(detect, "load_model", lambda path: (FakeModel(), ["mask", "no-mask"]))
    (tmp_path / "broken.webm").write_bytes(b"\x1a\x45\xdf\xa3 truncated")
    code = detect.main(["--model", "any.keras", str(clip), str(tmp_path / "broken.webm"), "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"error: {tmp_path / 'broken.webm'}: not a readable video" in captured.err
    assert "astronaut.mp4: 12 frames at 12.00 fps, processed at" in captured.out
    assert "frames/s" in captured.out
    frames, meta = read_all(tmp_path / "astronaut_annotated.mp4")
    assert len(frames) == 12 and meta["fps"] == 12
