"""Every command takes `--model` as .keras, .onnx or .tflite, and serves a .keras file's own .onnx export.

The colour model (conftest: raw RGB in, P(mask) from mean red against mean blue) is exported by
facemask.conversion's code to both formats; predict, detect (a photo and a video), evaluate crops and
evaluate photos must then give the labels the .keras file gives. Files that are not classifiers are
one `error:` line and exit 1; an .onnx beside a .keras file is served only while its record says it
was exported from that very file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FixedFaces, TruthFaceDetector, build_colour_model, write_clip
from PIL import Image

from facemask import detect, evaluate, predict
from facemask.classifier import load_served, report_path
from facemask.detectors import FACE_DETECTORS
from facemask.models import save_model

FORMATS = ("onnx", "tflite")
# float32 exports compute what Keras computes in another order: probabilities agree to rounding.
TOLERANCE = 1e-5
THRESHOLD = 0.45  # the sidecar's, carried to the exports: a face at P(no-mask) 0.47 is no-mask in every format
# Two faces on grey: reddish (mask to the colour model) and bluish (no-mask).
FACES = ((20, 40, 120, 140), (250, 100, 390, 250))


@pytest.fixture(scope="module")
def models(sample_crops, tmp_path_factory) -> dict[str, Path]:
    """The colour model as .keras (alone in its folder: nothing is served in its place) and its float32
    .onnx and .tflite exports in another folder, each with a copy of the sidecar."""
    from facemask.conversion import export

    keras_file = save_model(build_colour_model(), tmp_path_factory.mktemp("keras") / "colour.keras",
                            no_mask_threshold=THRESHOLD)
    exports = tmp_path_factory.mktemp("exports")
    paths = {"keras": keras_file}
    for fmt in FORMATS:
        paths[fmt] = exports / f"colour.{fmt}"
        export(keras_file, fmt, None, paths[fmt], sample_crops, None)
    return paths


@pytest.fixture(scope="module")
def colour_photos(tmp_path_factory) -> list[Path]:
    """Uniform and noisy photos from reddish to bluish, some near the threshold."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for i, (red, blue) in enumerate([(200, 20), (20, 200), (120, 110), (110, 124), (90, 100), (128, 128)]):
        pixels = np.clip(rng.normal(0, 25, (48, 64, 3)) + (red, 100, blue), 0, 255).astype(np.uint8)
        paths.append(folder / f"face{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def two_face_photo(path: Path) -> Path:
    pixels = np.full((300, 400, 3), 128, dtype=np.uint8)
    pixels[40:140, 20:120] = (190, 90, 40)
    pixels[100:250, 250:390] = (60, 90, 170)
    Image.fromarray(pixels).save(path)
    return path


def predicted(capsys, model: Path, photos: list[Path]) -> list[tuple[str, float]]:
    assert predict.main(["--model", str(model), *map(str, photos)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    return [(label, float(p_no_mask.split("=")[1])) for _, label, _, p_no_mask in rows]


@pytest.mark.parametrize("fmt", FORMATS)
def test_predict_gives_the_keras_labels_with_an_export(models, colour_photos, capsys, fmt):
    expected = predicted(capsys, models["keras"], colour_photos)
    assert {label for label, _ in expected} == {"mask", "no-mask"}
    found = predicted(capsys, models[fmt], colour_photos)
    assert [label for label, _ in found] == [label for label, _ in expected]
    np.testing.assert_allclose([p for _, p in found], [p for _, p in expected], atol=1e-4)  # printed to 4 places


def read_video(path: Path) -> np.ndarray:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        return np.stack(list(iter(reader)))  # list(reader) would presize to its len(), infinity


@pytest.mark.parametrize("fmt", FORMATS)
def test_detect_gives_the_keras_labels_with_an_export_on_photos_and_videos(models, tmp_path, monkeypatch, fmt):
    monkeypatch.setattr(detect, "make_face_detector", lambda name: FixedFaces(*FACES))
    photo = two_face_photo(tmp_path / "two.png")
    clip = write_clip(tmp_path / "clip.mp4", frames=6)
    outputs = {}
    for kind in ("keras", fmt):
        outputs[kind] = tmp_path / kind
        assert detect.main(["--model", str(models[kind]), str(photo), str(clip), "--out", str(outputs[kind])]) == 0
    expected, found = (json.loads((outputs[kind] / "two.json").read_text()) for kind in ("keras", fmt))
    assert [d["label"] for d in found] == [d["label"] for d in expected] == ["mask", "no-mask"]
    np.testing.assert_allclose([d["p_no_mask"] for d in found], [d["p_no_mask"] for d in expected], atol=TOLERANCE)
    # The same labels and percentages drawn on every frame: the same video.
    frames = [read_video(outputs[kind] / "clip_annotated.mp4") for kind in ("keras", fmt)]
    assert frames[0].shape[0] == 6 and np.array_equal(*frames)


def test_only_a_detector_all_on_onnx_runtime_detects_frames_at_once(models):
    """facemask.video detects two frames at once only when both halves allow calls from several threads."""
    from facemask.detection import FaceMaskDetector
    from facemask.detectors import CenterFaceDetector

    on_onnx_runtime, on_opencv = CenterFaceDetector(), CenterFaceDetector(backend="opencv")
    for kind, safe in (("keras", False), ("onnx", True), ("tflite", False)):
        assert FaceMaskDetector(load_served(models[kind]), face_detector=on_onnx_runtime).thread_safe is safe, kind
    assert not FaceMaskDetector(load_served(models["onnx"]), face_detector=on_opencv).thread_safe


@pytest.mark.parametrize("fmt", FORMATS)
def test_evaluate_crops_scores_an_export_as_the_keras_model(models, sample_crops, tmp_path, capsys, fmt):
    metrics = {}
    for kind in ("keras", fmt):
        assert evaluate.main(["crops", "--model", str(models[kind]), str(sample_crops / "test"),
                              "--reports", str(tmp_path / kind)]) == 0
        metrics[kind] = json.loads(next((tmp_path / kind).glob("*_metrics.json")).read_text())
    for key in ("confusion_matrix", "accuracy", "count", "threshold"):
        assert metrics[fmt][key] == metrics["keras"][key], key
    assert metrics[fmt]["threshold"] == THRESHOLD


@pytest.mark.parametrize("fmt", FORMATS)
def test_evaluate_photos_scores_an_export_as_the_keras_model(models, sample_dir, tmp_path, monkeypatch, fmt):
    monkeypatch.setitem(FACE_DETECTORS, "truth",
                        lambda: TruthFaceDetector(sample_dir / "images", sample_dir / "train.csv"))
    reports = {}
    for kind in ("keras", fmt):
        assert evaluate.main(["photos", "--model", str(models[kind]), str(sample_dir / "images"),
                              str(sample_dir / "train.csv"), "--detector", "truth",
                              "--reports", str(tmp_path / kind)]) == 0
        reports[kind] = json.loads(next((tmp_path / kind).glob("*_photos_metrics.json")).read_text())
    for key in ("map50", "recall50", "precision50", "faces", "photos"):
        assert reports[fmt][key] == reports["keras"][key], key


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_app_serves_an_export_in_every_tab(models, monkeypatch, fmt):
    from facemask.app import __main__ as app

    served = {}
    monkeypatch.setattr(app, "serve", lambda detector, limits, args: served.setdefault("detector", detector) and 0)
    umask = os.umask(0o022)
    try:
        assert app.main(["--model", str(models[fmt]), "--port", "0"]) == 0
    finally:
        os.umask(umask)  # main() makes the process's files private, as the app's are
    # One detector, hence one classifier, behind the Photo, Video and Live tabs (build_app shares it).
    detector = served["detector"]
    assert detector.classifier.format == fmt and detector.no_mask_threshold == THRESHOLD


@pytest.mark.parametrize("fmt", FORMATS)
def test_watch_follows_the_same_people_with_an_export(models, tmp_path, monkeypatch, capsys, fmt):
    from facemask import detectors, watch

    monkeypatch.setattr(detectors, "make_face_detector", lambda name: FixedFaces((60, 20, 180, 150)))
    clip = write_clip(tmp_path / "clip.mp4", frames=12)
    events = {}
    for kind in ("keras", fmt):
        events[kind] = tmp_path / f"{kind}.jsonl"
        code = watch.main([str(clip), "--model", str(models[kind]), "--events", str(events[kind])])
        assert code == 0, capsys.readouterr().err
    expected, found = ([json.loads(line) for line in events[kind].read_text().splitlines()] for kind in ("keras", fmt))
    assert len(found) == len(expected) == 1
    assert found[0]["label"] == expected[0]["label"] and found[0]["frames"] == expected[0]["frames"]
    assert found[0]["p_no_mask"] == pytest.approx(expected[0]["p_no_mask"], abs=1e-4)


# --- files that are not classifiers -------------------------------------------------------------

@pytest.fixture(scope="module")
def not_classifiers(tmp_path_factory) -> dict[str, Path]:
    """A corrupt .onnx, and a valid .tflite that is no classifier (five outputs for two classes)."""
    import keras

    from facemask.conversion import export_tflite

    folder = tmp_path_factory.mktemp("not-classifiers")
    corrupt = folder / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 this is not an ONNX protobuf " * 20)
    inputs = keras.Input((16, 16, 3))
    five = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(inputs)))
    export_tflite(five, folder / "five.tflite", None, None)
    return {"onnx": corrupt, "tflite": folder / "five.tflite"}


@pytest.mark.parametrize("fmt, words", [("onnx", "not a readable ONNX model ("),
                                        ("tflite", "the model's outputs are [(None, 5)], not one probability")])
def test_a_file_that_is_not_a_classifier_is_one_error_line_in_every_command(
        not_classifiers, sample_crops, sample_dir, colour_photos, tmp_path, capsys, fmt, words):
    model = str(not_classifiers[fmt])
    from facemask import watch
    from facemask.app import __main__ as app

    clip = write_clip(tmp_path.parent / f"{tmp_path.name}-clip.mp4", frames=2)
    commands = {
        "predict": lambda: predict.main(["--model", model, str(colour_photos[0])]),
        "app": lambda: app.main(["--model", model, "--port", "0"]),
        "watch": lambda: watch.main([str(clip), "--model", model, "--events", str(tmp_path / "events.jsonl")]),
        "detect": lambda: detect.main(["--model", model, str(colour_photos[0]), "--out", str(tmp_path / "out")]),
        "evaluate crops": lambda: evaluate.main(["crops", "--model", model, str(sample_crops / "test"),
                                                 "--reports", str(tmp_path / "reports")]),
        "evaluate photos": lambda: evaluate.main(["photos", "--model", model, str(sample_dir / "images"),
                                                  str(sample_dir / "train.csv"), "--reports", str(tmp_path / "r")]),
    }
    for name, command in commands.items():
        code = command()
        err = capsys.readouterr().err
        assert code == 1, (name, err)
        assert err.splitlines() == [err.splitlines()[0]] and err.startswith(f"error: {model}: {words}"), (name, err)
    assert list(tmp_path.iterdir()) == []  # nothing written


# --- a .keras file's own .onnx, served in its place ---------------------------------------------

def beside(models: dict[str, Path], folder: Path) -> Path:
    """A copy of the .keras file with the .onnx exported from it (and its report) beside it."""
    for path in (models["keras"], models["keras"].with_suffix(".json"), models["onnx"],
                 report_path(models["onnx"])):
        shutil.copy(path, folder / path.name)
    return folder / models["keras"].name


def test_the_onnx_exported_from_a_keras_file_is_served_in_its_place(models, colour_photos, tmp_path, capsys):
    keras_file = beside(models, tmp_path)
    said = []
    assert load_served(keras_file, say=said.append).format == "onnx"
    assert said == [f"serving {tmp_path / 'colour.onnx'} (ONNX Runtime), exported from {keras_file}"]
    # The command says it on stderr; its lines on stdout are those of the .keras file.
    expected = predicted(capsys, models["keras"], colour_photos)
    assert predict.main(["--model", str(keras_file), *map(str, colour_photos)]) == 0
    out, err = capsys.readouterr()
    assert err == f"serving {tmp_path / 'colour.onnx'} (ONNX Runtime), exported from {keras_file}\n"
    assert [line.split("\t")[1] for line in out.splitlines()] == [label for label, _ in expected]
    # An .onnx of another name, or a quantized one, is never picked up.
    assert load_served(models["keras"], say=said.append).format == "keras" and len(said) == 1


def served(path: Path) -> tuple[str, list[str]]:
    said = []
    return load_served(path, say=said.append).format, said


def test_a_stale_foreign_or_broken_onnx_beside_is_ignored_with_one_warning(models, colour_photos, tmp_path, capsys):
    keras_file = beside(models, tmp_path)
    onnx = tmp_path / "colour.onnx"
    # The .keras file trained again (other weights): the .onnx was exported from what it was before.
    save_model(build_colour_model(weight=-0.01), keras_file, no_mask_threshold=THRESHOLD)
    fmt, said = served(keras_file)
    assert fmt == "keras" and said == [f"warning: {onnx} ignored (it was not exported from {keras_file} as that "
                                       f"file is now); serving {keras_file} (Keras)"]
    # ...and the command serves the new .keras, saying so once.
    assert predict.main(["--model", str(keras_file), str(colour_photos[0])]) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith(f"warning: {onnx} ignored") and "\tno-mask\t" in out
    # No record of where it came from (exported by hand to another name, then renamed).
    report_path(onnx).unlink()
    assert served(keras_file) == ("keras", [f"warning: {onnx} ignored (no colour.onnx.parity.json records which "
                                            f"model it was exported from); serving {keras_file} (Keras)"])
    # The right record, but the .onnx itself damaged since.
    keras_file = beside(models, tmp_path)
    onnx.write_bytes(onnx.read_bytes()[:50])
    fmt, said = served(keras_file)
    assert fmt == "keras" and len(said) == 1 and f"({onnx}: not a readable ONNX model" in said[0]


def test_training_writes_no_onnx_for_vgg16_and_survives_a_failed_export(models, tmp_path):
    from facemask.conversion import export_after_training

    keras_file = beside(models, tmp_path)
    (tmp_path / "colour.onnx").unlink()
    line = export_after_training(keras_file, "vgg16", tmp_path)
    assert line.startswith("no colour.onnx written: VGG16") and not (tmp_path / "colour.onnx").exists()
    line = export_after_training(keras_file, "compact", tmp_path / "no-data")
    assert line == f"no colour.onnx written: {tmp_path / 'no-data' / 'test'}: crop folder not found " \
                   "(the test crops check the export, the training crops calibrate int8; make them with split.py, " \
                   "or name them with --data/--calibration)"
    assert not (tmp_path / "colour.onnx").exists()


@pytest.mark.slow
def test_training_writes_the_onnx_and_detect_serves_it(sample_crops, tmp_path, monkeypatch, capsys):
    from facemask import train
    from facemask.classifier import file_sha256

    out = tmp_path / "models"
    assert train.main(["--arch", "compact", "--data", str(sample_crops), "--epochs", "1", "--batch-size", "16",
                       "--subset", "0.3", "--out", str(out), "--reports", str(tmp_path / "reports")]) == 0
    stdout = capsys.readouterr().out
    assert f"saved {out / 'compact.onnx'} for ONNX Runtime" in stdout
    report = json.loads(report_path(out / "compact.onnx").read_text())
    assert report["keras_sha256"] == file_sha256(out / "compact.keras") and report["label_agreement"] == 1.0
    monkeypatch.setattr(detect, "make_face_detector", lambda name: FixedFaces(*FACES))
    photo = two_face_photo(tmp_path / "two.png")
    assert detect.main(["--model", str(out / "compact.keras"), str(photo), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().err == (f"serving {out / 'compact.onnx'} (ONNX Runtime), exported from "
                                       f"{out / 'compact.keras'}\n")
    assert len(json.loads((tmp_path / "out" / "two.json").read_text())) == 2
