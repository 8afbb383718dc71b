"""One framing, one reader, one resize: the training pipeline feeds the model the very pixels serving feeds it.

The training path is split.py's crop file read by facemask.data's pipeline; the serving path is the
photo read by load_image, the face cut by FaceMaskDetector (crop_face, DEFAULT_MARGIN) and resized by
to_model_input. They must agree exactly: crops are lossless PNGs (a JPEG crop would differ by up to
about 20 grey levels), cut with one box arithmetic (images.face_box) and resized by one function.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from conftest import SHARED, FixedFaces, RecordingModel, requires_shared

from facemask import DEFAULT_MARGIN, annotations, split
from facemask.data import load_split, split_files
from facemask.detection import FaceMaskDetector
from facemask.images import load_image


def cut_with_split(images: Path, csv_path: Path, out: Path, names: list[str] | None = None) -> tuple[Path, Path]:
    """split.py's crops of the photos (all of them, or `names`), every one in the test split; and the CSV used."""
    if names is not None:
        with open(csv_path, newline="") as f:
            rows = [row for row in csv.reader(f) if row[0] in names or row[0] == "name"]
        csv_path = out.parent / "subset.csv"
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    assert split.main([str(images), str(csv_path), "0", "0", "100", "--out", str(out), "--workers", "1"]) == 0
    return out, csv_path


def assert_training_sees_what_serving_sees(images: Path, csv_path: Path, crops: Path) -> int:
    """Each crop as the training pipeline feeds it against the same face as detection feeds it."""
    files, _ = split_files([crops / "test"])
    pipeline = load_split(crops / "test", batch_size=64)  # as training reads a split, minus augmentation
    training = dict(zip(files, np.concatenate([x.numpy() for x, _ in pipeline]), strict=True))
    boxes = {row.line: (row.xmin, row.ymin, row.xmax, row.ymax) for row in annotations.read_rows(csv_path)}
    with open(crops / "manifest.csv", newline="") as f:
        crop_rows = list(csv.DictReader(f))
    for row in crop_rows:
        model = RecordingModel()
        # Serving: the photo read as detection reads it, the annotated box "found", cropped and resized.
        detector = FaceMaskDetector(model, face_detector=FixedFaces(boxes[int(row["csv_line"])]), max_side=10_000)
        assert detector.margin == DEFAULT_MARGIN
        detector.detect(load_image(images / row["source"]))
        (served,) = model.batches[-1]
        # Tolerance 0: crops are lossless PNGs, cut with the same box and resized by the same function.
        np.testing.assert_array_equal(training[crops / row["path"]], served, err_msg=row["path"])
    return len(crop_rows)


def test_training_and_serving_feed_the_model_the_same_pixels(sample_dir, tmp_path):
    crops, csv_path = cut_with_split(sample_dir / "images", sample_dir / "train.csv", tmp_path / "crops")
    assert assert_training_sees_what_serving_sees(sample_dir / "images", csv_path, crops) > 50


@requires_shared
def test_training_and_serving_feed_the_model_the_same_pixels_on_real_photos(tmp_path):
    folder = SHARED / "kaggle-format"
    names = sorted(p.name for p in (folder / "images").iterdir())
    chosen = [n for n in names if n.endswith(".png")][:3] + [n for n in names if n.endswith(".jpg")][:9]
    crops, csv_path = cut_with_split(folder / "images", folder / "train.csv", tmp_path / "crops", chosen)
    assert assert_training_sees_what_serving_sees(folder / "images", csv_path, crops) >= 20
