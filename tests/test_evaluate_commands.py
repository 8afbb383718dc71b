"""`python -m facemask.evaluate crops|photos`: end to end on the sample and the real data, and every bad input."""

from __future__ import annotations

import csv
import json
import os
import statistics
from collections import Counter
from pathlib import Path

import pytest
from conftest import SHARED, TruthFaceDetector, requires_shared

from facemask.data import list_images
from facemask.detectors import FACE_DETECTORS
from facemask.evaluate import main

PHOTO_KEYS = {"map50", "recall50", "precision50", "ap50", "photos", "faces", "seconds"}


def face_rows(csv_path: Path, names: set[str] | None = None) -> Counter:
    """Face rows per photo, as the Kaggle layout annotates them (incorrect masks included)."""
    with open(csv_path, newline="") as f:
        return Counter(row["name"] for row in csv.DictReader(f)
                       if row["classname"].startswith("face_") and (names is None or row["name"] in names))


def use_truth_detector(monkeypatch, folder: Path, **options) -> None:
    """Offer `--detector truth`, the annotated faces themselves, as the real detectors are offered."""
    monkeypatch.setitem(FACE_DETECTORS, "truth",
                        lambda: TruthFaceDetector(folder / "images", folder / "train.csv", **options))


def run_photos(folder: Path, model: Path, reports: Path, *extra: str) -> dict:
    code = main(["photos", "--model", str(model), str(folder / "images"), str(folder / "train.csv"),
                 "--reports", str(reports), *extra])
    assert code == 0
    return json.loads(next(reports.glob("*_photos_metrics.json")).read_text())


def error_line(capsys, code: int, expected: int, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == expected, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- crops


def test_crops_command_prints_and_writes_the_metrics(colour_model_file, sample_crops, tmp_path, capsys):
    args = ["crops", "--model", str(colour_model_file), str(sample_crops / "test"), "--reports", str(tmp_path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "colour_metrics.json").read_text())
    assert metrics["count"] == len(list((sample_crops / "test").glob("*/*.png")))
    assert f"accuracy           {metrics['accuracy']:.4f}" in printed and "no-mask recall" in printed
    assert (tmp_path / "colour_confusion.png").is_file()


# ---------------------------------------------------------------- photos, on the sample


def test_photos_command_with_perfect_faces(colour_model_file, sample_dir, tmp_path, monkeypatch, capsys):
    use_truth_detector(monkeypatch, sample_dir)
    report = run_photos(sample_dir, colour_model_file, tmp_path, "--detector", "truth")
    printed = capsys.readouterr()
    faces = face_rows(sample_dir / "train.csv")
    assert set(report) >= PHOTO_KEYS and set(report["ap50"]) == {"mask", "no-mask"}
    assert report["photos"] == len(faces) and report["faces"] == faces.total()
    assert report["recall50"] == report["precision50"] == 1.0
    # Every face found exactly where annotated: the classifier sees the same crops either way.
    assert report["accuracy_matched"] == pytest.approx(report["true_boxes"]["accuracy"])
    assert report["map50"] == pytest.approx(statistics.mean(report["ap50"].values()))
    assert report["seconds"] > 0 and report["photos_per_second"] > 0
    assert "face_with_mask_incorrect counted as no-mask" in printed.out
    assert f"mAP@0.5            {report['map50']:.3f}" in printed.out
    assert "evaluating" in printed.err  # the progress bar
    assert (tmp_path / "colour_truth_photos_pr.png").stat().st_size > 0


def test_photos_command_reports_by_face_size_and_labels_at_the_threshold(colour_model_file, sample_dir, tmp_path,
                                                                        monkeypatch, capsys):
    from facemask import split, splitting
    from facemask.metrics import size_bucket

    use_truth_detector(monkeypatch, sample_dir)
    report = run_photos(sample_dir, colour_model_file, tmp_path / "half", "--detector", "truth")
    # The annotated boxes' sizes are split.py's (the manifest's face sizes of the same faces).
    assert split.main([str(sample_dir / "images"), str(sample_dir / "train.csv"), "100", "0", "0",
                       "--incorrect", "no-mask", "--out", str(tmp_path / "crops")]) == 0
    rows = splitting.read_manifest(tmp_path / "crops" / "manifest.csv", splitting.MANIFEST_COLUMNS)
    buckets = Counter(size_bucket(min(int(r["face_width"]), int(r["face_height"]))) for r in rows)
    by_size = report["true_boxes"]["by_size"]
    assert {name: entry["count"] for name, entry in by_size.items()} == {name: buckets[name] for name in by_size}
    assert report["no_mask_threshold"] == 0.5 and report["true_boxes"]["threshold"] == 0.5
    assert "by face size (shorter side of the annotated box, px)" in capsys.readouterr().out
    # At threshold 0 every face is called no-mask: the detections' labels and the boxes' alike.
    report = run_photos(sample_dir, colour_model_file, tmp_path / "zero", "--detector", "truth", "--threshold", "0")
    no_mask = sum(r["label"] == "no-mask" for r in rows)
    assert report["accuracy_matched"] == pytest.approx(no_mask / len(rows))
    assert report["true_boxes"]["no_mask_recall"] == 1.0 and report["true_boxes"]["per_class"]["mask"]["recall"] == 0


def test_photos_command_counts_misses_and_false_faces(colour_model_file, sample_dir, tmp_path, monkeypatch):
    use_truth_detector(monkeypatch, sample_dir, miss_every=3, false_faces=True)
    report = run_photos(sample_dir, colour_model_file, tmp_path, "--detector", "truth")
    faces = face_rows(sample_dir / "train.csv")
    found = sum(n - n // 3 for n in faces.values())  # every third face of a photo missed
    assert report["matched"] == found
    assert report["recall50"] == pytest.approx(found / faces.total())
    assert report["precision50"] == pytest.approx(found / (found + len(faces)))  # one false face a photo
    assert report["ap50"]["mask"] < 1 and report["ap50"]["no-mask"] < 1


def test_photos_command_scores_only_the_test_photos_of_a_split(colour_model_file, sample_dir, sample_crops,
                                                              tmp_path, monkeypatch, capsys):
    use_truth_detector(monkeypatch, sample_dir)
    with open(sample_crops / "manifest.csv", newline="") as f:
        test_photos = {row["source"] for row in csv.DictReader(f) if row["split"] == "test"}
    report = run_photos(sample_dir, colour_model_file, tmp_path, "--detector", "truth",
                        "--split-manifest", str(sample_crops / "manifest.csv"))
    assert report["photos"] == len(test_photos) < len(face_rows(sample_dir / "train.csv"))
    assert report["faces"] == face_rows(sample_dir / "train.csv", test_photos).total()
    assert "the test photos of" in report["selection"] and "the test photos of" in capsys.readouterr().out
    listed = tmp_path / "photos.txt"
    listed.write_text("# two photos\n" + "\n".join(sorted(test_photos)[:2]) + "\n\n")
    report = run_photos(sample_dir, colour_model_file, tmp_path / "listed", "--detector", "truth",
                        "--photos-list", str(listed))
    assert report["photos"] == 2


# ---------------------------------------------------------------- bad input


@pytest.fixture
def photo_args(colour_model_file, sample_dir) -> list[str]:
    return ["photos", str(sample_dir / "images"), str(sample_dir / "train.csv"), "--model", str(colour_model_file)]


def test_missing_csv(photo_args, tmp_path, capsys):
    photo_args[2] = str(tmp_path / "no.csv")
    error_line(capsys, main(photo_args), 1, str(tmp_path / "no.csv"), "not found")


def test_empty_photo_folder(photo_args, tmp_path, capsys):
    (tmp_path / "images").mkdir()
    photo_args[1] = str(tmp_path / "images")
    error_line(capsys, main(photo_args), 1, str(tmp_path / "images"), "empty")
    photo_args[1] = str(tmp_path / "nowhere")
    error_line(capsys, main(photo_args), 1, str(tmp_path / "nowhere"), "not found")


def test_photos_of_another_set(photo_args, tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "other.jpg").write_bytes(b"x")
    photo_args[1] = str(tmp_path / "images")
    error_line(capsys, main(photo_args + ["--detector", "mtcnn"]), 1, "none of the", "could be read")


@pytest.mark.parametrize("content", [b"not a model", None])
def test_model_not_a_model(photo_args, sample_crops, tmp_path, capsys, content):
    model = tmp_path / "model.keras"
    if content is not None:
        model.write_bytes(content)
    for args in (photo_args, ["crops", str(sample_crops / "test"), "--model", "MODEL"]):
        args[-1] = str(model)
        error_line(capsys, main(args), 1, str(model))


def test_unknown_detector_and_conflicting_options(photo_args, tmp_path, capsys):
    error_line(capsys, main(photo_args + ["--detector", "yolo"]), 2, "--detector", "yolo", *FACE_DETECTORS)
    both = ["--split-manifest", "m.csv", "--photos-list", "p.txt"]
    error_line(capsys, main(photo_args + both), 2, "not allowed with")
    error_line(capsys, main(["pictures"]), 2, "invalid choice")
    error_line(capsys, main(photo_args + ["--threshold", "1.5"]), 2, "--threshold", "from 0 to 1")
    error_line(capsys, main(photo_args + ["--face-threshold", "-1"]), 2, "--face-threshold", "from 0 to 1")
    error_line(capsys, main(photo_args + ["--margin", "-1"]), 2, "--margin", "from 0 to 10")
    error_line(capsys, main(photo_args[:-2]), 2, "required", "--model")


def test_bad_photo_selections(photo_args, sample_crops, tmp_path, capsys):
    listed = tmp_path / "photos.txt"
    listed.write_text("not-annotated.jpg\n")
    error_line(capsys, main(photo_args + ["--photos-list", str(listed)]), 1, "without face rows", "not-annotated.jpg")
    error_line(capsys, main(photo_args + ["--photos-list", str(tmp_path / "none.txt")]), 1, "none.txt")
    error_line(capsys, main(photo_args + ["--split-manifest", str(photo_args[2])]), 1, "not a split.py manifest")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,split,source\ntrain/mask/a.png,train,a.png\n")
    error_line(capsys, main(photo_args + ["--split-manifest", str(manifest)]), 1, "no photo in the 'test' split")


def test_crops_of_a_missing_or_empty_split(colour_model_file, tmp_path, capsys):
    error_line(capsys, main(["crops", "--model", str(colour_model_file), str(tmp_path / "none")]), 1,
               str(tmp_path / "none"))
    (tmp_path / "empty" / "mask").mkdir(parents=True)
    error_line(capsys, main(["crops", "--model", str(colour_model_file), str(tmp_path / "empty")]), 1, "no images")


# ---------------------------------------------------------------- the real data


@requires_shared
def test_crops_command_on_real_crops(colour_model_file, tmp_path):
    split_dir = tmp_path / "test"
    for label in ("mask", "no-mask"):
        (split_dir / label).mkdir(parents=True)
        for path in list_images(SHARED / "crops" / label)[:15]:
            os.symlink(path, split_dir / label / path.name)
    assert main(["crops", "--model", str(colour_model_file), str(split_dir), "--reports",
                 str(tmp_path / "reports")]) == 0
    assert json.loads((tmp_path / "reports" / "colour_metrics.json").read_text())["count"] == 30


@requires_shared
def test_photos_command_on_real_photos(colour_model_file, tmp_path, monkeypatch):
    folder = SHARED / "kaggle-format"
    chosen = sorted(face_rows(folder / "train.csv"))[:8]
    listed = tmp_path / "photos.txt"
    listed.write_text("\n".join(chosen) + "\n")
    use_truth_detector(monkeypatch, folder)
    report = run_photos(folder, colour_model_file, tmp_path / "truth", "--detector", "truth",
                        "--photos-list", str(listed))
    assert report["photos"] == 8 and report["faces"] == face_rows(folder / "train.csv", set(chosen)).total()
    assert report["recall50"] == report["precision50"] == 1.0
    # A real detector on real photos: it finds some of the faces, and every key is there.
    report = run_photos(folder, colour_model_file, tmp_path / "mtcnn", "--detector", "mtcnn",
                        "--photos-list", str(listed))
    assert set(report) >= PHOTO_KEYS and 0.2 < report["recall50"] <= 1 and report["precision50"] > 0.5
