"""Face detectors: CenterFace on real and empty images, its decoding and NMS, box calibration, the factory."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from conftest import ASTRONAUT_FACE, FixedFaces, RecordingModel
from PIL import Image

from facemask import detectors
from facemask.detect import parse_args
from facemask.detection import FaceMaskDetector
from facemask.detectors import (
    CENTERFACE_CALIBRATION,
    DEFAULT_DETECTOR,
    FACE_DETECTORS,
    BoxCalibration,
    CenterFaceDetector,
    FaceDetector,
    decode_centerface,
    make_face_detector,
    non_maximum_suppression,
)
from facemask.metrics import iou


@pytest.fixture(scope="module")
def centerface() -> CenterFaceDetector:
    return CenterFaceDetector()


# --- on real images ------------------------------------------------------------------------------

def test_onnx_runtime_and_opencv_find_the_same_faces(centerface, astronaut):
    """The model as centerface_onnx prepares it for ONNX Runtime computes what the shipped file does in cv2.dnn."""
    rgb = np.asarray(astronaut)
    assert centerface.backend == "onnxruntime"
    ours, theirs = centerface.find_faces(rgb), CenterFaceDetector(backend="opencv").find_faces(rgb)
    assert len(ours) == len(theirs) >= 1
    for (box, score), (their_box, their_score) in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(box, their_box, atol=0.01)
        assert score == pytest.approx(their_score, abs=1e-5)
    with pytest.raises(ValueError, match="unknown CenterFace backend 'tensorrt'; choose one of onnxruntime, opencv"):
        CenterFaceDetector(backend="tensorrt")


def test_centerface_is_prepared_once_then_read_from_the_cache(tmp_path, monkeypatch):
    """The onnx package (0.7 s of a start) is needed only on the first start; a damaged cached file is made
    again, and a cache folder that cannot be written costs only the time."""
    monkeypatch.setenv("FACEMASK_CACHE", str(tmp_path / "cache"))
    fresh = detectors.centerface_onnx()
    assert detectors.prepared_centerface() == fresh
    cached, = (tmp_path / "cache").iterdir()
    assert cached.name.startswith(f"centerface-float32-v{detectors.CENTERFACE_PREPARATION}-")
    with monkeypatch.context() as patched:
        patched.setattr(detectors, "centerface_onnx", lambda *args: pytest.fail("prepared again"))
        assert detectors.prepared_centerface() == fresh
    cached.write_bytes(fresh[: len(fresh) // 2])  # damaged: its digest no longer matches its name
    assert detectors.prepared_centerface() == fresh and cached.read_bytes() == fresh
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("FACEMASK_CACHE", str(blocked))
    assert detectors.prepared_centerface() == fresh and blocked.read_text() == "not a folder"
    monkeypatch.delenv("FACEMASK_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert detectors.cache_folder() == tmp_path / "xdg" / "facemask"


def test_centerface_finds_the_astronaut_in_the_annotation_convention(centerface, astronaut):
    faces = [face for face in centerface.find_faces(np.asarray(astronaut)) if face[1] >= centerface.threshold]
    assert len(faces) == 1
    box, score = faces[0]
    assert score > 0.8
    # The known box mapped to the Kaggle convention (brows to below the chin) is what it reports...
    assert iou(box, CENTERFACE_CALIBRATION.apply([ASTRONAUT_FACE])[0]) > 0.75
    # ...and its network's own box is the known box, forehead to chin.
    (raw_box, _), = [f for f in CenterFaceDetector(calibration=BoxCalibration()).find_faces(np.asarray(astronaut))
                     if f[1] >= centerface.threshold]
    assert iou(raw_box, ASTRONAUT_FACE) > 0.75


def test_centerface_finds_no_face_where_there_is_none(centerface):
    rng = np.random.default_rng(0)
    for image in (np.full((300, 400, 3), 128, np.uint8), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)):
        assert [face for face in centerface.find_faces(image) if face[1] >= centerface.threshold] == []


def test_centerface_boxes_stay_in_the_image_whatever_its_size(centerface, astronaut):
    # Odd sizes (padded to multiples of 32), grey and RGBA arrays, and a photo cut through the face: the
    # boxes a photo's path gets, clipped once by FaceMaskDetector in the original's pixels.
    finder = FaceMaskDetector(None, face_detector=centerface, face_threshold=0.0)
    for image in (np.asarray(astronaut)[:301, :199], np.asarray(astronaut.convert("L")),
                  np.asarray(astronaut.convert("RGBA")), np.zeros((1, 1, 3), np.uint8)):
        for (x0, y0, x1, y1), _ in finder.find_faces(Image.fromarray(image)):
            assert 0 <= x0 <= x1 <= image.shape[1] and 0 <= y0 <= y1 <= image.shape[0]


def test_upscaling_helps_small_photos_and_spares_large_frames(centerface):
    assert centerface.input_scale(400, 300) == pytest.approx(1.5)  # a Kaggle crowd photo
    assert 1.0 < centerface.input_scale(575, 400) < 1.5  # tapering towards 640
    assert centerface.input_scale(640, 480) == 1.0  # a webcam frame
    assert centerface.input_scale(1920, 1080) == 1.0  # never downscaled either


class SpyCenterFace(CenterFaceDetector):
    """CenterFace that records the size of each array it is given and whether it may enlarge it."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[tuple[int, ...], bool]] = []

    def find_faces(self, rgb, allow_upscale=True):
        self.calls.append((rgb.shape, allow_upscale))
        return super().find_faces(rgb, allow_upscale)


def test_a_copy_shrunk_for_speed_is_not_enlarged_again(astronaut):
    spy = SpyCenterFace()
    frame = astronaut.resize((640, 480))
    FaceMaskDetector(RecordingModel(), face_detector=spy, max_side=320).find_faces(frame)  # the video default
    FaceMaskDetector(RecordingModel(), face_detector=spy, max_side=1024).find_faces(astronaut.resize((400, 300)))
    assert spy.calls == [((240, 320, 3), False), ((300, 400, 3), True)]


def test_the_astronaut_is_found_at_the_same_place_small_and_large(centerface, astronaut):
    small = centerface.find_faces(np.asarray(astronaut.resize((256, 256))))  # upscaled 1.5x before detection
    large = centerface.find_faces(np.asarray(astronaut.resize((1024, 1024))))  # not upscaled
    best = [max(faces, key=lambda face: face[1])[0] for faces in (small, large)]
    # Boxes mapped back through the wrong factor (1.5) would overlap at IoU 0.44 at most; the network's
    # own box differs a little between resolutions (0.72 here).
    assert iou([2 * v for v in best[0]], [v / 2 for v in best[1]]) > 0.65


# --- decoding and NMS on a hand-built heat map ----------------------------------------------------

def test_decoding_places_boxes_from_heat_map_sizes_and_offsets():
    heat = np.zeros((8, 10), np.float32)
    log_sizes = np.zeros((2, 8, 10), np.float32)
    offsets = np.zeros((2, 8, 10), np.float32)
    heat[2, 3] = 0.9  # a face centred at ((3 + 0.5 + 0.5) * 4, (2 + 0.25 + 0.5) * 4) = (16, 11)
    log_sizes[:, 2, 3] = np.log([6.0, 4.0])  # height 6 * 4 = 24, width 4 * 4 = 16
    offsets[:, 2, 3] = (0.25, 0.5)
    heat[6, 8] = 0.05  # under the cut-off
    boxes, scores = decode_centerface(heat, log_sizes, offsets, min_score=0.1)
    np.testing.assert_allclose(boxes, [[8, -1, 24, 23]], atol=1e-5)
    np.testing.assert_allclose(scores, [0.9])
    empty_boxes, empty_scores = decode_centerface(heat, log_sizes, offsets, min_score=0.95)
    assert empty_boxes.shape == (0, 4) and empty_scores.shape == (0,)


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 5, 10, 15], [21, 20, 31, 30]], float)
    scores = np.array([0.6, 0.9, 0.8, 0.7, 0.3])
    # Box 1 beats box 0 (IoU 0.82); box 3 overlaps box 1 at 0.29 only, under 0.3: a second face.
    assert non_maximum_suppression(boxes, scores, max_iou=0.3).tolist() == [1, 2, 3]
    assert non_maximum_suppression(boxes, scores, max_iou=0.2).tolist() == [1, 2]
    assert non_maximum_suppression(np.zeros((0, 4)), np.zeros(0), 0.3).tolist() == []


# --- box calibration -----------------------------------------------------------------------------

def test_calibration_round_trip_recovers_a_known_calibration():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 300, (40, 2))
    detected = np.hstack([xy, xy + rng.uniform(10, 80, (40, 2))])
    truth = BoxCalibration(scale_w=1.06, scale_h=0.9, shift_x=0.03, shift_y=0.12)
    annotated = truth.apply(detected)
    annotated[:3] = [[0, 0, 5, 5]] * 3  # three wrong matches: the medians ignore them
    fitted = BoxCalibration.fit(detected, annotated)
    for name in ("scale_w", "scale_h", "shift_x", "shift_y"):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), abs=1e-9)
    np.testing.assert_allclose(fitted.apply(detected[3:]), annotated[3:])


def test_identity_calibration_leaves_boxes_and_fit_refuses_unmatched_lists():
    boxes = np.array([[10.0, 20.0, 50.0, 80.0]])
    np.testing.assert_allclose(BoxCalibration().apply(boxes), boxes)
    with pytest.raises(ValueError, match="matched pairs"):
        BoxCalibration.fit(boxes, np.zeros((0, 4)))


def test_the_shipped_calibrations_shorten_and_lower_the_box():
    for name in FACE_DETECTORS:
        calibration = FACE_DETECTORS[name].__init__.__defaults__[-1]
        assert isinstance(calibration, BoxCalibration)
        assert calibration.scale_h < 1 and calibration.shift_y > 0  # hairline -> brows, and down past the chin


# --- the factory, thresholds and the command lines -------------------------------------------------

def test_centerface_is_the_default_and_each_detector_brings_its_threshold(centerface):
    assert DEFAULT_DETECTOR == "centerface" and list(FACE_DETECTORS) == ["centerface", "mtcnn"]
    assert FaceMaskDetector(RecordingModel(), face_detector=centerface).face_threshold == pytest.approx(0.4)
    # A double: all its faces.
    assert FaceMaskDetector(RecordingModel(), face_detector=FixedFaces()).face_threshold == 0.0
    assert FaceMaskDetector(RecordingModel(), face_detector=centerface, face_threshold=0.7).face_threshold == 0.7
    with pytest.raises(ValueError, match="unknown face detector 'yolo'; choose one of centerface, mtcnn"):
        make_face_detector("yolo")


def test_every_detector_takes_allow_upscale_as_the_interface_says():
    # FaceMaskDetector passes it to whichever detector it holds, with no special case for any of them.
    expected = inspect.signature(FaceDetector.find_faces).parameters["allow_upscale"]
    for name, detector in FACE_DETECTORS.items():
        found = inspect.signature(detector.find_faces).parameters.get("allow_upscale")
        assert found is not None and found.default is expected.default is True, name


def test_detector_options_of_the_commands():
    assert parse_args(["--model", "m.keras", "a.jpg"]).detector == "centerface"
    assert parse_args(["--model", "m.keras", "a.jpg", "--detector", "mtcnn"]).detector == "mtcnn"
    from facemask.app import __main__ as app

    assert app.parse_args(["--model", "m.keras"]).detector == "centerface"
    assert app.parse_args(["--model", "m.keras", "--detector", "mtcnn"]).detector == "mtcnn"
    with pytest.raises(SystemExit):
        parse_args(["--model", "m.keras", "a.jpg", "--detector", "yolo"])
