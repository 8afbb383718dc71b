"""The README's pictures: docs/ stays small, and scripts/make_pictures.py (with scripts/demo_photo.py,
which picks a test photo the model never trained on) runs end to end."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_SAMPLE, ROOT
from PIL import Image

DOCS = ROOT / "docs"
MAX_BYTES = 300_000
PHOTO = "maksssksksss316.jpg"  # a sample photo with 3 masked faces and one without
OTHER_PHOTO = "maksssksksss670.png"  # 4 masked faces


def load_script(name: str):
    """A script of scripts/ as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_manifest(path: Path, faces: list[tuple[str, str, str]]) -> Path:
    """A split.py manifest with one row per (split, source photo, label)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "split", "label", "source", "csv_line", "classname", "xmin", "ymin", "xmax", "ymax"])
        for number, (split, source, label) in enumerate(faces, start=2):
            writer.writerow([f"{split}/{label}/{Path(source).stem}_r{number}.png", split, label, source, number,
                             "face_with_mask" if label == "mask" else "face_no_mask", 0, 0, 10, 10])
    return path


# ---------------------------------------------------------------- docs/


def test_every_file_in_docs_is_under_300_kb():
    files = [path for path in DOCS.rglob("*") if path.is_file()]
    assert {"annotated.jpg", "curves.png", "confusion.png", "app.png"} <= {path.name for path in files}
    too_big = {str(path.relative_to(ROOT)): path.stat().st_size for path in files if path.stat().st_size > MAX_BYTES}
    assert too_big == {}


def test_docs_pictures_are_images():
    for path in DOCS.glob("*.*"):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            with Image.open(path) as image:
                image.verify()


# ---------------------------------------------------------------- picking the photo


def test_the_picked_photo_is_a_test_photo_with_both_classes(tmp_path):
    demo_photo = load_script("demo_photo")
    images = tmp_path / "images"
    images.mkdir()
    for name in ("both.jpg", "many.jpg", "trained.jpg"):
        (images / name).write_bytes(b"")
    manifest = write_manifest(tmp_path / "manifest.csv", [
        ("test", "both.jpg", "mask"), ("test", "both.jpg", "no-mask"),
        ("test", "many.jpg", "mask"), ("test", "many.jpg", "mask"), ("test", "many.jpg", "mask"),
        ("train", "trained.jpg", "mask"), ("train", "trained.jpg", "no-mask"), ("train", "trained.jpg", "no-mask"),
        ("test", "elsewhere.jpg", "mask"), ("test", "elsewhere.jpg", "no-mask"), ("test", "elsewhere.jpg", "mask"),
    ])
    assert demo_photo.pick_test_photo(manifest, images) == images / "both.jpg"
    (images / "both.jpg").unlink()
    assert demo_photo.pick_test_photo(manifest, images) == images / "many.jpg"
    assert demo_photo.is_test_photo(manifest, Path("x") / "many.jpg")
    assert not demo_photo.is_test_photo(manifest, images / "trained.jpg")


def test_picking_fails_clearly(tmp_path, capsys):
    demo_photo = load_script("demo_photo")
    manifest = write_manifest(tmp_path / "manifest.csv", [("train", "a.jpg", "mask")])
    assert demo_photo.main([str(manifest), str(tmp_path)]) == 1
    assert "none of the 0 test photos" in capsys.readouterr().err
    (tmp_path / "not-a-manifest.csv").write_text("name,x1\na.jpg,1\n")
    assert demo_photo.main([str(tmp_path / "not-a-manifest.csv"), str(tmp_path)]) == 1
    assert "not a split.py manifest" in capsys.readouterr().err


def test_demo_photo_prints_the_path(tmp_path, capsys):
    demo_photo = load_script("demo_photo")
    manifest = write_manifest(tmp_path / "manifest.csv", [("test", PHOTO, "mask"), ("test", PHOTO, "no-mask")])
    assert demo_photo.main([str(manifest), str(REAL_SAMPLE / "images")]) == 0
    assert capsys.readouterr().out.strip() == str(REAL_SAMPLE / "images" / PHOTO)


# ---------------------------------------------------------------- sizes


def test_encode_fits_the_limit_or_says_it_cannot():
    make_pictures = load_script("make_pictures")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8))
    jpeg = make_pictures.encode(noise, ".jpg", max_bytes=200_000)
    assert len(jpeg) <= 200_000 and jpeg[:2] == b"\xff\xd8"
    # Noise does not compress to 1 kB in any way: refused, not silently written too large.
    with pytest.raises(make_pictures.PictureError, match="cannot fit"):
        make_pictures.encode(noise, ".png", max_bytes=1_000)
    # A screenshot-like picture with a few flat colours and a photo-like gradient: 256 colours make it fit.
    gradient = np.linspace(0, 255, 600 * 600 * 3).reshape(600, 600, 3).astype(np.uint8)
    gradient[::7] = 255
    full = len(make_pictures.encode(Image.fromarray(gradient), ".png", max_bytes=10**9))
    reduced = make_pictures.encode(Image.fromarray(gradient), ".png", max_bytes=full - 1)
    assert len(reduced) < full
    with pytest.raises(make_pictures.PictureError, match="unsupported"):
        make_pictures.encode(noise, ".gif")


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """An untrained scratch CNN with a made-up history beside it, a made-up metrics JSON and PR plot, and a
    manifest whose test split holds PHOTO (and OTHER_PHOTO in train)."""
    from facemask.models import build_scratch_cnn, save_model

    folder = tmp_path_factory.mktemp("picture-inputs")
    model = save_model(build_scratch_cnn(), folder / "models" / "scratch.keras")
    history = {"loss": [0.7, 0.4, 0.3], "val_loss": [0.6, 0.45, 0.4],
               "accuracy": [0.7, 0.85, 0.9], "val_accuracy": [0.72, 0.8, 0.84]}
    (folder / "models" / "scratch_history.json").write_text(json.dumps(history))
    metrics = folder / "metrics.json"
    metrics.write_text(json.dumps({"class_names": ["mask", "no-mask"], "confusion_matrix": [[40, 3], [2, 9]]}))
    pr_curve = folder / "pr.png"
    Image.new("RGB", (500, 400), "white").save(pr_curve)
    manifest = write_manifest(folder / "manifest.csv", [
        ("test", PHOTO, "mask"), ("test", PHOTO, "no-mask"), ("train", OTHER_PHOTO, "mask")])
    return {"model": model, "metrics": metrics, "pr_curve": pr_curve, "manifest": manifest}


def picture_args(inputs: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["--model", str(inputs["model"]), "--metrics", str(inputs["metrics"]), "--manifest",
            str(inputs["manifest"]), "--images", str(REAL_SAMPLE / "images"), "--out", str(out), *extra]


def test_pictures_are_made_from_a_test_photo(inputs, tmp_path, capsys):
    make_pictures = load_script("make_pictures")
    out = tmp_path / "docs"
    code = make_pictures.main(picture_args(inputs, out, "--pr-curve", str(inputs["pr_curve"]), "--no-screenshot"))
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.startswith(f"{PHOTO}: ")  # picked from the manifest's test split
    assert sorted(path.name for path in out.iterdir()) == ["annotated.jpg", "confusion.png", "curves.png",
                                                           "pr_curve.png"]
    for path in out.iterdir():
        assert path.stat().st_size <= MAX_BYTES
        assert path.name in printed
    with Image.open(out / "annotated.jpg") as annotated, Image.open(REAL_SAMPLE / "images" / PHOTO) as photo:
        assert annotated.format == "JPEG"
        assert annotated.width == 800 and abs(annotated.height - photo.height * 800 / photo.width) <= 1
    with Image.open(out / "curves.png") as curves:
        assert curves.width > curves.height  # loss and accuracy side by side


def test_a_photo_the_model_trained_on_is_refused(inputs, tmp_path, capsys):
    make_pictures = load_script("make_pictures")
    photo = REAL_SAMPLE / "images" / OTHER_PHOTO
    code = make_pictures.main(picture_args(inputs, tmp_path / "docs", "--photo", str(photo), "--no-screenshot"))
    assert code == 1
    assert f"{OTHER_PHOTO} is not a test photo" in capsys.readouterr().err
    assert not (tmp_path / "docs").exists()


def test_missing_inputs_are_named(inputs, tmp_path, capsys):
    make_pictures = load_script("make_pictures")
    args = picture_args(inputs, tmp_path / "docs", "--no-screenshot", "--history", str(tmp_path / "nope.json"))
    assert make_pictures.main(args) == 1
    error = capsys.readouterr().err
    assert "--history" in error and "nope.json" in error


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").is_file(), reason="/usr/bin/chromium is absent: `make chromium`")
def test_app_screenshot_in_chromium(inputs, tmp_path, capsys):
    pytest.importorskip("playwright.sync_api")
    make_pictures = load_script("make_pictures")
    out = tmp_path / "docs"
    assert make_pictures.main(picture_args(inputs, out)) == 0, capsys.readouterr().err
    with Image.open(out / "app.png") as screenshot:
        assert screenshot.width == make_pictures.SCREENSHOT_VIEWPORT["width"]
        assert screenshot.height >= make_pictures.SCREENSHOT_VIEWPORT["height"] // 2
    assert (out / "app.png").stat().st_size <= MAX_BYTES
