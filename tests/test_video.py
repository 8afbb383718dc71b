"""Video: every frame annotated into a browser-playable MP4, bad and over-long files refused cleanly."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from conftest import FixedFaces, RecordingModel, write_clip, write_plain_clip

from facemask import detect, detection
from facemask.detection import FaceMaskDetector
from facemask.detectors import MTCNNFaceDetector
from facemask.video import VideoError, VideoLimits, annotate_video, probe_video


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
    model = RecordingModel(p_mask=0.3)
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
    assert [len(batch) for batch in model.batches] == [1] * 12 and stats["faces"] == 12
    # Red boxes (the double says no-mask) are drawn: some frame pixels are strongly red.
    red = (frames[0][..., 0] > 150) & (frames[0][..., 1] < 80) & (frames[0][..., 2] < 80)
    assert red.sum() > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4"]  # no temporary left behind


@pytest.mark.parametrize(("suffix", "codec"), [(".webm", "libvpx"), (".mov", "libx264"), (".avi", "mpeg4")])
def test_other_containers_are_read(tmp_path, suffix, codec):
    source = write_clip(tmp_path / f"clip{suffix}", frames=5, fps=10, codec=codec)
    stats = annotate_video(source, tmp_path / "out.mp4", FaceMaskDetector(RecordingModel(), face_detector=FixedFaces()))
    frames, meta = read_all(tmp_path / "out.mp4")
    assert stats["frames"] == len(frames) == 5 and meta["fps"] == 10


def test_odd_frame_sizes_become_even(tmp_path):
    source = write_clip(tmp_path / "odd.mp4", frames=3, size=(161, 121), codec="mpeg4")
    detector = FaceMaskDetector(RecordingModel(), face_detector=FixedFaces((10, 10, 60, 70)))
    annotate_video(source, tmp_path / "out.mp4", detector)
    frames, meta = read_all(tmp_path / "out.mp4")
    assert meta["size"] == (160, 120) and len(frames) == 3


def test_faces_are_looked_for_on_a_smaller_copy_of_each_frame(tmp_path):
    source = write_clip(tmp_path / "vga.mp4", frames=2, size=(640, 480))
    faces = FixedFaces((50, 40, 100, 100))  # in the pixels of the copy it is given
    model = RecordingModel(p_mask=0.3)  # no-mask: red boxes
    stats = annotate_video(source, tmp_path / "default.mp4", FaceMaskDetector(model, face_detector=faces))
    assert set(faces.shapes) == {(240, 320, 3)} and stats["faces"] == 2
    assert set(faces.upscales) == {False}  # a copy shrunk for speed is not enlarged again
    faces.shapes.clear()
    annotate_video(source, tmp_path / "full.mp4", FaceMaskDetector(model, face_detector=faces), max_side=None)
    assert set(faces.shapes) == {(480, 640, 3)}  # None: the detector's own max_side (1024) keeps the full frame
    # The box found on the half-size copy is drawn at twice its size on the full frame: its left edge,
    # 2 px wide, is red at x = 100, 101 from y = 80 to 200.
    edge = read_all(tmp_path / "default.mp4")[0][0][90:190, 100:102].astype(int)
    assert edge[..., 0].mean() > 150 and edge[..., 1].mean() < 80


def test_not_a_video_is_refused_without_leaving_files(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video at all")
    out = tmp_path / "out"
    detector = FaceMaskDetector(RecordingModel(), face_detector=FixedFaces())
    with pytest.raises(VideoError, match="notes.mp4: not a readable video"):
        annotate_video(tmp_path / "notes.mp4", out / "annotated.mp4", detector)
    with pytest.raises(VideoError, match="missing.mp4: file not found"):
        annotate_video(tmp_path / "missing.mp4", out / "annotated.mp4", detector)
    assert not out.exists() or list(out.iterdir()) == []


def test_truncated_video_is_refused_without_leaving_files(tmp_path, clip):
    whole = clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    detector = FaceMaskDetector(RecordingModel(), face_detector=FixedFaces())
    with pytest.raises(VideoError, match="cut.mp4"):
        annotate_video(tmp_path / "cut.mp4", tmp_path / "out" / "annotated.mp4", detector)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_cli_annotates_a_video(tmp_path, clip, capsys, monkeypatch):
    # The command line on a video, with the classifier swapped for the double to keep this test quick.
    from facemask.classifier import KerasClassifier

    monkeypatch.setattr(detection, "load_served", lambda path: KerasClassifier(RecordingModel()))
    (tmp_path / "broken.webm").write_bytes(b"\x1a\x45\xdf\xa3 truncated")
    code = detect.main(["--model", "any.keras", str(clip), str(tmp_path / "broken.webm"), "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"error: {tmp_path / 'broken.webm'}: not a readable video" in captured.err
    assert "astronaut.mp4: 12 frames at 12.00 fps, processed at" in captured.out
    assert "frames/s" in captured.out
    frames, meta = read_all(tmp_path / "astronaut_annotated.mp4")
    assert len(frames) == 12 and meta["fps"] == 12


@pytest.fixture(scope="module")
def fast_clip(tmp_path_factory) -> Path:
    """5 s at 960 frames/s: 4,800 frames in about 100 kB."""
    return write_plain_clip(tmp_path_factory.mktemp("fast") / "fast.mp4", frames=4800, fps=960, size=(64, 48))


@pytest.fixture(scope="module")
def huge_frames_clip(tmp_path_factory) -> Path:
    """Two frames of 8000x8000 (64 megapixels each) in about 40 kB."""
    return write_plain_clip(tmp_path_factory.mktemp("huge") / "huge.mp4", frames=2, fps=2, size=(8000, 8000))


@pytest.mark.parametrize(("video", "limits", "message"), [
    ("clip", VideoLimits(max_seconds=0.5), r"astronaut\.mp4: the video lasts 1\.0 s, over the 0\.5 s limit"),
    ("fast_clip", VideoLimits(max_frames=1000), r"fast\.mp4: 4,800 frames at 960 fps, over the 1,000 frame limit"),
    ("huge_frames_clip", VideoLimits(max_frame_pixels=3840 * 2160),
     r"huge\.mp4: its frames are 8000x8000, 64,000,000 pixels, over the 8,294,400 limit"),
], ids=["too long", "too many frames", "frames too large"])
def test_a_video_over_a_limit_in_its_header_is_refused_before_any_frame(tmp_path, request, video, limits, message):
    faces = FixedFaces()
    with pytest.raises(VideoError, match=message):
        annotate_video(request.getfixturevalue(video), tmp_path / "out.mp4",
                       FaceMaskDetector(RecordingModel(), face_detector=faces), limits)
    assert faces.shapes == [] and list(tmp_path.iterdir()) == []


def test_a_high_frame_rate_is_sampled_down_before_frames_reach_python(tmp_path, fast_clip):
    faces = FixedFaces()
    stats = annotate_video(fast_clip, tmp_path / "out.mp4", FaceMaskDetector(RecordingModel(), face_detector=faces),
                           VideoLimits(max_fps=30))
    frames, meta = read_all(tmp_path / "out.mp4")
    # 5 s at 30 frames/s (ffmpeg's rate conversion may hold the last frame a little longer), not 4,800 frames.
    assert len(faces.shapes) == stats["frames"] == len(frames) and 150 <= len(frames) <= 153
    assert meta["fps"] == stats["fps_output"] == 30 and stats["fps_source"] == 960 and stats["sampled"]
    assert stats["expected_frames"] == 150 and stats["warning"] is None


def test_frame_limit_also_holds_when_the_header_gives_no_duration(tmp_path):
    # A raw H.264 stream has no container, so no duration: the limit is enforced while reading.
    source = write_clip(tmp_path / "raw.h264", frames=12, codec="libx264", output_params=["-f", "h264"])
    assert probe_video(source).seconds is None
    with pytest.raises(VideoError, match=r"raw\.h264: the video has over 5 frames, the limit"):
        annotate_video(source, tmp_path / "out" / "out.mp4",
                       FaceMaskDetector(RecordingModel(), face_detector=FixedFaces()), VideoLimits(max_frames=5))
    assert list((tmp_path / "out").iterdir()) == []


def test_large_frames_are_scaled_down_by_ffmpeg(tmp_path):
    source = write_plain_clip(tmp_path / "wide.mp4", frames=3, fps=10, size=(1000, 500))
    faces = FixedFaces()
    stats = annotate_video(source, tmp_path / "out.mp4", FaceMaskDetector(RecordingModel(), face_detector=faces),
                           VideoLimits(max_frame_side=400), max_side=None)
    frames, meta = read_all(tmp_path / "out.mp4")
    assert meta["size"] == stats["size"] == (400, 200) and len(frames) == 3
    assert set(faces.shapes) == {(200, 400, 3)}


def test_a_truncated_video_says_how_many_frames_were_read(tmp_path):
    # The index at the front (faststart) announces 60 frames; the cut leaves the frames of the first half.
    whole = write_clip(tmp_path / "whole.mp4", frames=60, fps=12, output_params=["-movflags", "+faststart", "-g", "6"])
    data = whole.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    stats = annotate_video(tmp_path / "cut.mp4", tmp_path / "out.mp4",
                           FaceMaskDetector(RecordingModel(), face_detector=FixedFaces()))
    assert 0 < stats["frames"] < 54 and stats["expected_frames"] == 60
    assert stats["warning"] == (f"{tmp_path / 'cut.mp4'}: only {stats['frames']} of the 60 frames its header "
                                "announces could be read; the file looks truncated or damaged")


def test_a_photo_renamed_mp4_is_refused(tmp_path, astronaut):
    astronaut.save(tmp_path / "photo.mp4", format="JPEG")
    with pytest.raises(VideoError, match=r"photo\.mp4: a still image \(jpeg_pipe\), not a video"):
        annotate_video(tmp_path / "photo.mp4", tmp_path / "out.mp4",
                       FaceMaskDetector(RecordingModel(), face_detector=FixedFaces()))


def test_the_sound_track_is_reported_as_not_kept(tmp_path, clip):
    import subprocess

    import imageio_ffmpeg

    with_sound = tmp_path / "sound.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(clip), "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", "-c:v", "copy", "-c:a", "aac", "-shortest", str(with_sound)],
                   check=True)
    detector = FaceMaskDetector(RecordingModel(), face_detector=FixedFaces())
    assert annotate_video(with_sound, tmp_path / "a.mp4", detector)["has_audio"] is True
    assert annotate_video(clip, tmp_path / "b.mp4", detector)["has_audio"] is False
