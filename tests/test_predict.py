"""predict: image reading (modes, EXIF, errors), batched probabilities, and the command line."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import COLOUR_SIZE, ROOT, build_colour_model, colour_probabilities
from PIL import Image

from facemask import DEFAULT_MARGIN
from facemask.classifier import load_classifier, predict_files, predict_proba
from facemask.images import ImageError, load_image, to_model_input
from facemask.models import save_model
from facemask.predict import main


@pytest.fixture(scope="module")
def colour_model() -> keras.Model:
    """Known weights: reddish crops are "mask", bluish crops "no-mask", so expected probabilities can be computed."""
    return build_colour_model()


@pytest.fixture(scope="module")
def saved_model(colour_model, tmp_path_factory):
    return save_model(colour_model, tmp_path_factory.mktemp("model") / "colour.keras")


@pytest.fixture
def images(tmp_path):
    """Uniform-colour images in several modes and formats, with the RGB they decode to."""
    specs = {
        "red.jpg": (Image.new("RGB", (40, 30), (200, 40, 40)), (200, 40, 40)),
        "blue.png": (Image.new("RGB", (20, 20), (30, 60, 220)), (30, 60, 220)),
        "rgba.png": (Image.new("RGBA", (24, 24), (180, 90, 60, 255)), (180, 90, 60)),
        "grey.png": (Image.new("L", (16, 16), 90), (90, 90, 90)),
        "palette.gif": (Image.new("RGB", (18, 18), (20, 20, 150)).convert("P"), (20, 20, 150)),
    }
    paths = {}
    for name, (image, rgb) in specs.items():
        image.save(tmp_path / name, quality=100) if name.endswith(".jpg") else image.save(tmp_path / name)
        paths[tmp_path / name] = rgb
    return paths


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facemask.predict", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_load_image_converts_every_mode_to_rgb(tmp_path):
    sixteen_bit = np.array([[0, 32896], [65535, 257]], dtype=np.uint16)
    Image.fromarray(sixteen_bit).save(tmp_path / "deep.png")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("LA", (8, 8), (120, 255)).save(tmp_path / "la.png")

    deep = load_image(tmp_path / "deep.png")
    assert deep.mode == "RGB"
    # 16-bit values are scaled to 8 bits (not clipped to white): 65535 -> 255, 32896 -> 128, 257 -> 1.
    assert np.asarray(deep)[..., 0].tolist() == [[0, 128], [255, 1]]
    assert load_image(tmp_path / "cmyk.jpg").mode == "RGB"
    assert np.asarray(load_image(tmp_path / "la.png"))[0, 0].tolist() == [120, 120, 120]


def test_load_image_applies_exif_orientation(tmp_path):
    image = Image.new("RGB", (30, 10), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 5, 10))  # a red stripe on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones write portraits
    image.save(tmp_path / "sideways.jpg", exif=exif, quality=100)

    upright = load_image(tmp_path / "sideways.jpg")
    assert upright.size == (10, 30)
    pixels = np.asarray(upright).astype(int)
    assert pixels[1, 5, 0] > 200 and pixels[1, 5, 2] < 60  # the left stripe is now along the top
    assert pixels[-2, 5, 2] > 200


def test_load_image_errors_name_the_file(tmp_path):
    (tmp_path / "notes.jpg").write_text("not a picture")
    Image.new("RGB", (64, 64), (10, 200, 10)).save(tmp_path / "whole.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:300])
    for path, what in [(tmp_path / "missing.png", "file not found"), (tmp_path, "is a folder"),
                       (tmp_path / "notes.jpg", "not an image"), (tmp_path / "cut.jpg", "damaged or truncated")]:
        with pytest.raises(ImageError, match=what) as error:
            load_image(path)
        assert str(path) in str(error.value)


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def test_not_an_image_is_refused_with_its_name(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels")
    with pytest.raises(ImageError, match="notes.jpg: not an image"):
        load_image(path)
    with pytest.raises(ImageError, match="upload.png: not an image"):
        load_image(b"\x00\x01 nope", name="upload.png")
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "missing.png")


def test_truncated_photo_is_refused(astronaut):
    whole = encoded(astronaut, "JPEG", quality=90)
    with pytest.raises(ImageError, match="cut.jpg: damaged or truncated"):
        load_image(whole[: len(whole) // 2], name="cut.jpg")


def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    # 8000 x 8000 one-bit pixels: a few kB of PNG that would decode to 192 MB of RGB.
    bomb = encoded(Image.new("1", (8_000, 8_000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="bomb.png: 8000x8000 is 64,000,000 pixels, over the 40,000,000 limit"):
        load_image(bomb, name="bomb.png")
    with pytest.raises(ImageError, match="over the 5,000 limit"):
        load_image(encoded(Image.new("RGB", (100, 100)), "PNG"), max_pixels=5_000)
    # Pillow's own guard, should a caller raise our limit above it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    with pytest.raises(ImageError, match="huge.png: refused as a possible decompression bomb"):
        load_image(encoded(Image.new("RGB", (100, 100)), "PNG"), max_pixels=10**9, name="huge.png")
    with pytest.raises(ImageError, match="decompression bomb"):  # the warning zone, between 1x and 2x the limit
        load_image(encoded(Image.new("RGB", (40, 40)), "PNG"), max_pixels=10**9)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK", "I;16", "1"])
def test_any_mode_becomes_rgb(mode, astronaut):
    source = astronaut.resize((64, 48)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        source = Image.fromarray(np.asarray(source).astype(np.uint16) * 257)  # full 16-bit range
    format = "JPEG" if mode == "CMYK" else "PNG"
    photo = load_image(encoded(source, format))
    assert photo.mode == "RGB" and photo.size == (64, 48)
    if mode in ("L", "I;16"):
        expected = np.asarray(astronaut.resize((64, 48)).convert("L"), dtype=float)
        assert np.abs(np.asarray(photo, dtype=float)[..., 0] - expected).max() <= 1


def test_transparent_pixels_become_white():
    pixels = np.zeros((10, 10, 4), dtype=np.uint8)
    pixels[:5] = (255, 0, 0, 255)  # top half opaque red, bottom half fully transparent
    photo = np.asarray(load_image(encoded(Image.fromarray(pixels), "PNG")))
    assert tuple(photo[0, 0]) == (255, 0, 0) and tuple(photo[9, 9]) == (255, 255, 255)


def test_predict_proba_gives_the_models_probabilities_for_a_batch(colour_model, images):
    loaded = [load_image(path) for path in images]
    probabilities = predict_proba(colour_model, loaded, batch_size=2)
    assert probabilities.shape == (len(images), 2) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    # JPEG is lossy, so the red image decodes a unit or two off its colour: 0.02 of probability at most.
    expected = np.stack([colour_probabilities(rgb) for rgb in images.values()])
    np.testing.assert_allclose(probabilities, expected, atol=0.02)
    assert probabilities[:, 0].round(3).tolist() != probabilities[:, 1].round(3).tolist()

    # Arrays, and a batch already at the model's size, give the same answer as PIL images.
    batch = to_model_input(loaded, (COLOUR_SIZE, COLOUR_SIZE))
    np.testing.assert_allclose(predict_proba(colour_model, batch), probabilities, atol=1e-6)
    np.testing.assert_allclose(predict_proba(colour_model, [np.asarray(im) for im in loaded]), probabilities, atol=1e-6)
    assert predict_proba(colour_model, []).shape == (0, 2)


def test_predict_files_keeps_order_and_reports_unreadable_files(colour_model, images, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = list(images)
    paths = [good[0], tmp_path / "broken.png", *good[1:3], tmp_path / "absent.jpg", *good[3:]]
    outcomes = list(predict_files(colour_model, paths, batch_size=2))

    assert [path for path, _ in outcomes] == paths
    assert [isinstance(o, ImageError) for _, o in outcomes] == [False, True, False, False, True, False, False]
    rows = np.stack([o for _, o in outcomes if not isinstance(o, ImageError)])
    np.testing.assert_allclose(rows, predict_proba(colour_model, [load_image(p) for p in good]), atol=1e-6)


def check_prediction_lines(stdout: str, paths: list[Path], expected: np.ndarray) -> None:
    """One `file<TAB>label<TAB>P(mask)=..<TAB>P(no-mask)=..` line per image, matching `expected`."""
    lines = stdout.strip().splitlines()
    assert len(lines) == len(paths)
    for line, path, row in zip(lines, paths, expected, strict=True):
        name, label, p_mask, p_no_mask = line.split("\t")
        assert name == str(path)
        assert p_mask.startswith("P(mask)=") and p_no_mask.startswith("P(no-mask)=")
        printed = np.array([float(p_mask.split("=")[1]), float(p_no_mask.split("=")[1])])
        assert abs(printed.sum() - 1.0) <= 2e-4  # each printed with 4 decimals
        np.testing.assert_allclose(printed, row, atol=1e-4)
        # The model saved without a threshold: 0.5, and a face exactly at it (the grey one) is called no-mask.
        assert label == ("no-mask" if row[1] >= 0.5 else "mask")


@pytest.mark.slow
def test_cli_prints_one_line_per_image_and_reports_unreadable_ones(colour_model, saved_model, images, tmp_path):
    """The real command in a subprocess: good images printed in order, bad ones on stderr, exit 1."""
    (tmp_path / "notes.jpg").write_text("not a picture")
    good = list(images)
    arguments = [*good[:2], tmp_path / "notes.jpg", *good[2:], tmp_path / "absent.png"]
    result = run_cli("--model", saved_model, *arguments, "--batch-size", "2")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    check_prediction_lines(result.stdout, good, predict_proba(colour_model, [load_image(p) for p in good]))
    assert {line.split("\t")[1] for line in result.stdout.splitlines()} == {"mask", "no-mask"}
    assert f"error: {tmp_path / 'notes.jpg'}: not an image" in result.stderr
    assert f"error: {tmp_path / 'absent.png'}: file not found" in result.stderr
    assert "2 of 7 images could not be read" in result.stderr


def test_cli_exits_0_when_every_image_is_read(colour_model, saved_model, images, capsys):
    assert main(["--model", str(saved_model), *map(str, images)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    check_prediction_lines(captured.out, list(images), predict_proba(colour_model, [load_image(p) for p in images]))


@pytest.mark.slow
def test_cli_missing_model_is_a_clear_error(images, tmp_path):
    result = run_cli("--model", tmp_path / "nowhere.keras", *images)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"error: model file not found: {tmp_path / 'nowhere.keras'}"


def test_cli_unreadable_model_is_a_clear_error(images, tmp_path, capsys):
    (tmp_path / "fake.keras").write_text("this is not a model")
    assert main(["--model", str(tmp_path / "fake.keras"), *map(str, images)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {tmp_path / 'fake.keras'}: not a readable Keras model")


def test_cli_labels_follow_the_models_threshold_and_change_exactly_at_it(colour_model, tmp_path, capsys):
    """The sidecar's threshold labels the faces; --threshold overrides it; at P(no-mask) = threshold: no-mask."""
    face = tmp_path / "purple.png"
    Image.new("RGB", (16, 16), (120, 40, 170)).save(face)  # P(no-mask) 0.73 by the colour model's weights
    p = float(predict_proba(colour_model, [load_image(face)])[0, 1])

    def label(model, *options) -> str:
        assert main(["--model", str(model), str(face), *options]) == 0
        return capsys.readouterr().out.split("\t")[1]

    old = save_model(colour_model, tmp_path / "old.keras")  # a model saved without a threshold: 0.5
    assert label(old) == "no-mask"
    chosen = save_model(colour_model, tmp_path / "chosen.keras", no_mask_threshold=0.8)
    assert label(chosen) == "mask"
    assert label(chosen, "--threshold", str(p)) == "no-mask"
    assert label(chosen, "--threshold", str(np.nextafter(np.float32(p), np.float32(1)))) == "mask"


def test_the_loader_checks_the_classes_once_for_every_command(colour_model, tmp_path, images, capsys):
    """load_classifier is the one check of the class names: any order of the project's, nothing else;
    a model saved without a margin is served with DEFAULT_MARGIN."""
    model = save_model(colour_model, tmp_path / "ours.keras")
    assert load_classifier(model).margin == DEFAULT_MARGIN
    reversed_names = save_model(colour_model, tmp_path / "reversed.keras", class_names=["no-mask", "mask"])
    assert load_classifier(reversed_names).class_names == ["no-mask", "mask"]
    foreign = save_model(colour_model, tmp_path / "foreign.keras", class_names=["cat", "dog"])
    with pytest.raises(ValueError, match=r"foreign\.keras: the model has 2 outputs for classes \['cat', 'dog'\]"):
        load_classifier(foreign)
    assert main(["--model", str(foreign), str(next(iter(images)))]) == 1
    assert capsys.readouterr().err.startswith(f"error: {foreign}: the model has 2 outputs")


def test_one_graph_per_model_serves_every_batch_size(caplog):
    """predict_proba traces Keras' predict step once per model, for any batch size: the last, smaller
    batch of a split, or the few faces of one frame, reuse it. Left to Keras, every model traced twice
    (full batch, then the remainder), and a notebook scoring and reloading a few models on a small test
    split drew TensorFlow's warning of "excessive retracing"."""
    images = np.random.default_rng(0).uniform(0, 255, (33, COLOUR_SIZE, COLOUR_SIZE, 3)).astype(np.float32)
    for _ in range(6):  # as many models one after the other as the notebook runs, and more
        model = build_colour_model()
        expected = model.predict(images, verbose=0)  # Keras' own batching; then a fresh predict step
        model.make_predict_function(force=True)
        for batch_size in (32, 5, 1):
            np.testing.assert_allclose(predict_proba(model, images, batch_size=batch_size), expected, atol=1e-6)
        assert model.predict_function.experimental_get_tracing_count() == 1
    assert "retracing" not in caplog.text
