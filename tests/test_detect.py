"""Detection: upright photos, finding and classifying faces, drawing, the photo command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ASTRONAUT_FACE, ROOT, FixedFaces, RecordingModel
from PIL import Image

from facemask import DEFAULT_MARGIN, detect
from facemask import detection as detection_module
from facemask.classifier import load_classifier, predict_proba
from facemask.detection import MASK_COLOUR, NO_MASK_COLOUR, Detection, FaceMaskDetector, draw_detections
from facemask.detectors import BoxCalibration, MTCNNFaceDetector
from facemask.images import crop_face, load_image
from facemask.metrics import iou
from facemask.models import load_model, save_model

# The detectors' own boxes, as drawn by their networks: the calibration to the Kaggle annotation
# convention (brows to below the chin, tested in test_detectors.py) moves them off ASTRONAUT_FACE.
RAW = BoxCalibration()


@pytest.fixture(scope="module")
def mtcnn() -> MTCNNFaceDetector:
    return MTCNNFaceDetector(calibration=RAW)


def two_patch_photo() -> Image.Image:
    """Grey photo with a green patch (left) and a red patch (right) for the classifier double (RecordingModel)."""
    pixels = np.full((300, 400, 3), 128, dtype=np.uint8)
    pixels[50:150, 20:120] = (40, 200, 40)
    pixels[100:250, 250:390] = (200, 40, 40)
    return Image.fromarray(pixels)


# --- finding and classifying faces ---------------------------------------------------------------

def test_mtcnn_finds_the_astronaut(mtcnn, astronaut):
    faces = mtcnn.find_faces(np.asarray(astronaut))
    assert len(faces) == 1
    box, score = faces[0]
    assert score > 0.9
    assert iou(box, ASTRONAUT_FACE) > 0.7
    # MTCNN takes allow_upscale, as every FaceDetector does, and has no upscaling for it to turn off.
    assert mtcnn.find_faces(np.asarray(astronaut), allow_upscale=False) == faces


@pytest.mark.parametrize("min_face_size", [10, 40])
def test_mtcnn_min_face_sizes_away_from_20_work(min_face_size, astronaut):
    # On this 320x240 photo, mtcnn 1.0's own pyramid raises ValueError at 40 (a convolution gets no input).
    photo = np.asarray(astronaut.resize((320, 320)))[:240]
    faces = MTCNNFaceDetector(min_face_size=min_face_size, calibration=RAW).find_faces(photo)
    assert len(faces) == 1 and iou(faces[0][0], [v * 320 / 512 for v in ASTRONAUT_FACE]) > 0.7


def test_all_faces_of_a_photo_are_classified_in_one_batched_call():
    model = RecordingModel()
    faces = FixedFaces((20, 50, 120, 150), (250, 100, 390, 250), scores=(0.99, 0.95))
    detections = FaceMaskDetector(model, face_detector=faces, margin=0.0).detect(two_patch_photo())
    assert len(model.batches) == 1 and model.batches[0].shape == (2, 224, 224, 3)
    assert [d.label for d in detections] == ["mask", "no-mask"]
    assert detections[0].box == (20, 50, 120, 150) and detections[0].score == pytest.approx(0.99)
    for detection in detections:
        assert detection.p_mask + detection.p_no_mask == pytest.approx(1.0)
        assert set(detection.to_dict()) == {"box", "score", "p_mask", "p_no_mask", "label"}
    json.dumps([d.to_dict() for d in detections])  # plain types only


def test_no_face_means_no_classifier_call():
    model = RecordingModel()
    assert FaceMaskDetector(model, face_detector=FixedFaces()).detect(two_patch_photo()) == []
    assert model.batches == []


def test_boxes_are_clipped_inside_the_image():
    faces = FixedFaces((-30, -10, 60, 80), (350, 200, 460, 330), (500, 10, 560, 50))
    detections = FaceMaskDetector(RecordingModel(), face_detector=faces).detect(two_patch_photo())
    # The third box lies wholly outside the 400x300 photo: nothing is left of it.
    assert [d.box for d in detections] == [(0, 0, 60, 80), (350, 200, 400, 300)]


def test_face_threshold_and_min_face_filter_faces():
    faces = FixedFaces((20, 50, 120, 150), (250, 100, 390, 250), (10, 10, 25, 25), scores=(0.99, 0.5, 0.99))
    detector = FaceMaskDetector(RecordingModel(), face_detector=faces, face_threshold=0.9, min_size=20)
    assert [d.box for d in detector.detect(two_patch_photo())] == [(20, 50, 120, 150)]


def test_large_photos_are_downscaled_for_detection_and_boxes_mapped_back():
    faces = FixedFaces((10, 20, 60, 80))
    photo = Image.new("RGB", (4000, 2000), (128, 128, 128))
    detections = FaceMaskDetector(RecordingModel(), face_detector=faces, max_side=1000).detect(photo)
    assert faces.shapes == [(500, 1000, 3)]
    assert detections[0].box == (40, 80, 240, 320)


def test_the_face_detector_may_enlarge_a_photo_only_when_it_was_not_shrunk():
    # Every FaceDetector is told; one that upscales small images (CenterFace) must not undo the shrinking.
    faces = FixedFaces()
    detector = FaceMaskDetector(RecordingModel(), face_detector=faces, max_side=1000)
    for size in ((4000, 2000), (1000, 500), (400, 300)):
        detector.detect(Image.new("RGB", size))
    assert faces.shapes == [(500, 1000, 3), (500, 1000, 3), (300, 400, 3)]
    assert faces.upscales == [False, True, True]


def test_upscaled_astronaut_is_found_at_the_upscaled_place(mtcnn, astronaut):
    photo = astronaut.resize((2048, 2048), Image.BILINEAR)
    detections = FaceMaskDetector(RecordingModel(), face_detector=mtcnn, max_side=512).detect(photo)
    assert len(detections) == 1
    assert iou(detections[0].box, [4 * v for v in ASTRONAUT_FACE]) > 0.7


def test_crops_take_the_margin_and_stay_inside():
    photo = two_patch_photo()
    assert crop_face(photo, (100, 100, 200, 150), 0.1).size == (120, 60)
    assert crop_face(photo, (0, 0, 100, 100), 0.5).size == (150, 150)


def test_the_classifier_sees_the_crop_from_the_original_photo():
    # The detector sees a 100 px copy; the crop must still come from the full 400 px photo.
    model = RecordingModel()
    faces = FixedFaces((5, 12.5, 30, 37.5))  # the green patch, in the copy's pixels
    detections = FaceMaskDetector(model, face_detector=faces, max_side=100, margin=0.0).detect(two_patch_photo())
    assert detections[0].box == (20, 50, 120, 150) and detections[0].label == "mask"
    assert model.batches[0][0, ..., 1].mean() == pytest.approx(200, abs=1)


# --- loading photos (load_image itself is tested in test_predict.py) ------------------------------

def test_exif_rotated_photo_is_upright_and_its_face_found(tmp_path, mtcnn, astronaut):
    upright = astronaut.crop((0, 0, 512, 400))
    # A phone held sideways stores the pixels turned and says so in the EXIF Orientation tag.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "sideways.jpg"
    stored.save(path, quality=95, exif=exif)
    photo = load_image(path)
    assert photo.size == (512, 400) and photo.mode == "RGB"
    assert np.abs(np.asarray(photo, dtype=float) - np.asarray(upright, dtype=float)).mean() < 5
    detections = FaceMaskDetector(RecordingModel(), face_detector=mtcnn).detect(photo)
    assert len(detections) == 1 and iou(detections[0].box, ASTRONAUT_FACE) > 0.7


# --- drawing -------------------------------------------------------------------------------------

def test_labels_follow_the_no_mask_threshold_exactly(tmp_path, colour_model_file):
    faces = FixedFaces((20, 50, 120, 150), (250, 100, 390, 250))
    photo = two_patch_photo()
    p_no_mask = [d.p_no_mask for d in FaceMaskDetector(RecordingModel(), face_detector=faces).detect(photo)]
    assert p_no_mask[0] != p_no_mask[1]
    for threshold in (*p_no_mask, 0.0, 1.0):
        labelled = FaceMaskDetector(RecordingModel(), face_detector=faces, no_mask_threshold=threshold).detect(photo)
        assert [d.label for d in labelled] == ["no-mask" if p >= threshold else "mask" for p in p_no_mask]
    with pytest.raises(ValueError, match="from 0 to 1"):
        FaceMaskDetector(RecordingModel(), face_detector=faces, no_mask_threshold=1.5)
    # from_path serves a model at its sidecar's threshold (0.5 when it has none) unless told otherwise.

    model, _ = load_model(colour_model_file)
    chosen = save_model(model, tmp_path / "chosen.keras", no_mask_threshold=0.3)
    assert FaceMaskDetector.from_path(chosen, face_detector=faces).no_mask_threshold == 0.3
    assert FaceMaskDetector.from_path(chosen, face_detector=faces, no_mask_threshold=0.6).no_mask_threshold == 0.6
    assert FaceMaskDetector.from_path(colour_model_file, face_detector=faces).no_mask_threshold == 0.5


def test_from_path_crops_with_the_models_margin_unless_told(colour_model_file, tmp_path):
    """The margin the training crops were cut with (the served classifier's, from its sidecar) is the one
    detection crops with; `margin` (the commands' --margin) overrides it."""
    assert load_classifier(colour_model_file).margin == DEFAULT_MARGIN  # saved without a "margin": the default
    model, _ = load_model(colour_model_file)
    wide = save_model(model, tmp_path / "wide.keras", margin=0.3)
    assert load_classifier(wide).margin == 0.3
    faces = FixedFaces((20, 50, 120, 150))
    assert FaceMaskDetector.from_path(wide, face_detector=faces).margin == 0.3
    assert FaceMaskDetector.from_path(wide, face_detector=faces, margin=0.0).margin == 0.0


def test_box_colours_follow_the_label():
    photo = Image.new("RGB", (400, 300), (128, 128, 128))
    detections = [Detection((20, 80, 120, 200), 0.99, 0.97, 0.03, "mask"),
                  Detection((250, 0, 380, 150), 0.98, 0.10, 0.90, "no-mask")]
    annotated = draw_detections(photo, detections)
    pixels = np.asarray(annotated)
    assert tuple(pixels[140, 20]) == MASK_COLOUR  # left edge of the mask box
    assert tuple(pixels[100, 250]) == NO_MASK_COLOUR  # left edge of the no-mask box
    assert tuple(pixels[2, 251]) == NO_MASK_COLOUR  # its label, inside it since the box touches the top
    assert (pixels[:12, 260:300] == (255, 255, 255)).all(axis=-1).any()  # with white text
    # The mask label sits on a filled green band just above the box, with white text on it.
    assert (pixels[72:80, 20] == MASK_COLOUR).all()
    assert (pixels[68:80, 20:120] == (255, 255, 255)).all(axis=-1).any()
    assert tuple(np.asarray(photo)[140, 20]) == (128, 128, 128)  # the original is untouched


def test_labels_number_the_faces_and_shrink_to_the_number_on_small_faces(drawn_texts):
    from facemask.detection import label_text

    photo = Image.new("RGB", (1000, 1000), (128, 128, 128))
    detections = [Detection((100, 100, 400, 400), 0.99, 0.97, 0.03, "mask"),
                  Detection((600, 600, 612, 612), 0.95, 0.27, 0.73, "no-mask")]  # 12 px in a 1000 px photo
    draw_detections(photo, detections)
    # Numbered from 1 in the detector's order, as the web app's table numbers its rows.
    assert drawn_texts == ["1 mask 97%", "2"]
    assert label_text(2, detections[1]) == "2 no-mask 73%"


def test_lines_and_labels_grow_with_the_photo():
    def line_and_label(size: int) -> tuple[int, int]:
        photo = Image.new("RGB", (size, size), (128, 128, 128))
        box = (size // 4, size // 2, size // 2, 3 * size // 4)
        pixels = np.asarray(draw_detections(photo, [Detection(box, 0.99, 0.9, 0.1, "mask")]))
        row = pixels[size * 5 // 8]
        line = int((row == MASK_COLOUR).all(axis=-1)[: size * 3 // 8].sum())
        label = int((pixels[: box[1], box[0]] == MASK_COLOUR).all(axis=-1).sum())  # the band above the box
        return line, label

    small_line, small_label = line_and_label(200)
    large_line, large_label = line_and_label(3000)
    assert small_line >= 1 and large_line >= 5 * small_line
    assert small_label >= 10 and large_label >= 5 * small_label


# --- real photos ---------------------------------------------------------------------------------

def test_mtcnn_finds_most_labelled_faces_on_real_photos(mtcnn, real_sample_dir):
    folder = real_sample_dir
    boxes = pd.read_csv(folder / "train.csv")
    boxes.columns = ["name", "xmin", "ymin", "xmax", "ymax", "classname"]  # the header is misleading
    boxes = boxes[(boxes.xmax - boxes.xmin >= 30) & (boxes.ymax - boxes.ymin >= 30)]
    names = sorted(boxes.name.unique())[:8]
    detector = FaceMaskDetector(RecordingModel(), face_detector=mtcnn)
    matched = total = 0
    for name in names:
        photo = load_image(folder / "images" / name)
        found = [d.box for d in detector.detect(photo)]
        for x0, y0, x1, y1 in found:
            assert 0 <= x0 < x1 <= photo.width and 0 <= y0 < y1 <= photo.height
        truth = boxes[boxes.name == name][["xmin", "ymin", "xmax", "ymax"]].to_numpy()
        matched += sum(any(iou(face, box) >= 0.3 for box in found) for face in truth)
        total += len(truth)
    assert total >= 8
    assert matched / total >= 0.6


# --- command line --------------------------------------------------------------------------------

def test_cli_annotates_photos_and_reports_bad_files(tmp_path, colour_model_file, astronaut, capsys):
    astronaut.save(tmp_path / "astronaut.jpg", quality=95)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    astronaut.convert("RGBA").save(tmp_path / "portrait.png")
    out = tmp_path / "out"
    code = detect.main(["--model", str(colour_model_file), str(tmp_path / "astronaut.jpg"),
                        str(tmp_path / "broken.png"), str(tmp_path / "portrait.png"), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"error: {tmp_path / 'broken.png'}: not an image" in captured.err
    lines = captured.out.splitlines()
    (face,) = json.loads((out / "astronaut.json").read_text())
    # The whole line, its label worked out here: the classifier on the face cut as training cuts it, at
    # the model's threshold (0.5: its sidecar has none).
    crop = crop_face(load_image(tmp_path / "astronaut.jpg"), face["box"])
    p_no_mask = float(predict_proba(load_classifier(colour_model_file), [crop])[0, 1])
    masked = p_no_mask < 0.5
    assert face["p_no_mask"] == pytest.approx(p_no_mask, abs=1e-5)
    assert lines[0] == (f"astronaut.jpg: 1 face, {int(masked)} mask, {int(not masked)} no-mask -> "
                        f"{out / 'astronaut_annotated.jpg'}")
    assert lines[1].startswith("portrait.png: 1 face")
    assert Image.open(out / "astronaut_annotated.jpg").size == (512, 512)
    assert Image.open(out / "portrait_annotated.png").mode == "RGB"
    # The default detector's box is in the Kaggle convention, lower than this one (test_detectors.py).
    assert iou(face["box"], ASTRONAUT_FACE) > 0.6 and face["label"] in ("mask", "no-mask")
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.json", "astronaut_annotated.jpg", "portrait.json",
                                                     "portrait_annotated.png"]


def test_cli_refuses_a_missing_or_broken_model_before_any_work(tmp_path, astronaut, capsys):
    astronaut.save(tmp_path / "a.jpg")
    assert detect.main(["--model", str(tmp_path / "none.keras"), str(tmp_path / "a.jpg"), "--out",
                        str(tmp_path / "out")]) == 1
    assert "error: model file not found" in capsys.readouterr().err
    (tmp_path / "junk.keras").write_text("junk")
    assert detect.main(["--model", str(tmp_path / "junk.keras"), str(tmp_path / "a.jpg"), "--out",
                        str(tmp_path / "out")]) == 1
    assert "not a readable Keras model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_runs_as_a_module(tmp_path, colour_model_file, astronaut):
    astronaut.save(tmp_path / "astronaut.png")
    result = subprocess.run([sys.executable, "-m", "facemask.detect", "--model", str(colour_model_file),
                             str(tmp_path / "astronaut.png"), "--out", str(tmp_path / "out")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("astronaut.png: 1 face")
    assert (tmp_path / "out" / "astronaut_annotated.png").is_file()


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_cli_inputs_sharing_a_stem_get_one_output_each(tmp_path, colour_model_file, astronaut, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        astronaut.save(tmp_path / folder / "x.jpg")
    astronaut.save(tmp_path / "a" / "x.png")
    out = tmp_path / "out"
    code = detect.main(["--model", str(colour_model_file), str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "x.jpg"),
                        str(tmp_path / "a" / "x.png"), "--out", str(out)])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["x-2.json", "x-2_annotated.jpg", "x-3.json", "x-3_annotated.png",
                                                     "x.json", "x_annotated.jpg"]
    assert [line.rsplit(" -> ", 1)[1] for line in printed] == [
        str(out / "x_annotated.jpg"), str(out / "x-2_annotated.jpg"), str(out / "x-3_annotated.png")]


def test_output_stems_are_unique_whatever_the_inputs():
    paths = [detect.Path(p) for p in ("a/x.jpg", "b/x.jpg", "x.mp4", "X.png", "x-2.jpg", "y.jpg")]
    stems = detect.output_stems(paths)
    assert stems == ["x", "x-2", "x-3", "X-4", "x-2-2", "y"]
    assert len({s.lower() for s in stems}) == len(stems)


@pytest.fixture
def model_never_loads(monkeypatch):
    def refuse(path, *args):
        raise AssertionError("the model must not load when the command line is wrong")

    monkeypatch.setattr(detection_module, "load_served", refuse)


@pytest.mark.parametrize(("option", "value", "words"), [
    ("--margin", "-1", "'-1' must be a number from 0 to 10"),
    ("--margin", "inf", "'inf' must be a number from 0 to 10"),
    ("--margin", "1e308", "'1e308' must be a number from 0 to 10"),
    ("--margin", "nan", "'nan' must be a number from 0 to 10"),
    ("--threshold", "1.5", "'1.5' must be a number from 0 to 1"),
    ("--face-threshold", "-0.1", "'-0.1' must be a number from 0 to 1"),
    ("--min-size", "-3", "'-3' must be a number at least 0"),
    ("--max-side", "0", "'0' must be a number at least 1"),
    ("--video-max-side", "0", "'0' must be a number at least 1"),
    ("--max-side", "ten", "'ten' is not a number"),
])
def test_cli_bad_numbers_give_one_error_line_before_the_model_loads(tmp_path, capsys, model_never_loads, option,
                                                                     value, words):
    with pytest.raises(SystemExit) as exited:
        detect.main(["--model", "m.keras", "a.jpg", "--out", str(tmp_path / "out"), option, value])
    lines = error_lines(capsys.readouterr().err)
    assert exited.value.code == 2 and len(lines) == 1 and option in lines[0] and words in lines[0], lines
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["file", "inside a file"])
def test_cli_an_unusable_output_folder_is_refused_before_the_model_loads(tmp_path, capsys, model_never_loads, where):
    (tmp_path / "taken").write_text("a file, not a folder")
    out = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "out"
    assert detect.main(["--model", "m.keras", "a.jpg", "--out", str(out)]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: ") and "not a folder" in lines[0]
    assert (tmp_path / "taken").read_text() == "a file, not a folder"
