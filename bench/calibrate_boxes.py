"""Fit each face detector's box calibration to the Kaggle annotation convention, on training photos only.

    python bench/calibrate_boxes.py [--data ../shared/datasets/kaggle-format] [--detector centerface|mtcnn|all]

Which photos are training photos is split.py's own decision: its grouped split of the data folder
with its default seed and margin, as bench/reproduce.py runs it (`SPLIT_ARGS`: 80/10/10, masks
worn incorrectly counted as no-mask), so the photos every README figure is scored on never inform
it. The detector runs as served (its own upscaling and threshold) with no calibration; every
detected face overlapping an annotated face at IoU >= 0.3 (greedy, best score first) gives a pair,
and `BoxCalibration.fit` takes the medians over the training pairs. Recall and precision at IoU 0.5
are printed before and after, on the validation photos (never the test ones), with the constants
to paste into facemask/detectors.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from reproduce import SPLIT_ARGS  # noqa: E402

from facemask import SPLITS, split  # noqa: E402
from facemask.detectors import BoxCalibration, CenterFaceDetector, MTCNNFaceDetector  # noqa: E402
from facemask.images import load_image  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "kaggle-format"
FACE_CLASSES = (split.MASK_CLASS, split.NO_MASK_CLASS, split.INCORRECT_CLASS)  # one box convention for all three
DETECTORS = {"centerface": CenterFaceDetector, "mtcnn": MTCNNFaceDetector}


def split_of_photos(images: Path, csv_path: Path) -> dict[str, str]:
    """Photo name -> train/valid/test, exactly as split.py assigns them with SPLIT_ARGS."""
    planned = split.plan(split.parse_args([str(images), str(csv_path), *SPLIT_ARGS]))
    return {crop.source: crop.split for crop in planned.crops}


def annotated_boxes(csv_path: Path) -> dict[str, np.ndarray]:
    """Photo name -> (n, 4) annotated face boxes xmin, ymin, xmax, ymax (split.py's reader, the right columns)."""
    boxes: dict[str, list] = {}
    for row in split.read_rows(csv_path):
        if row.classname in FACE_CLASSES:
            boxes.setdefault(row.name, []).append((row.xmin, row.ymin, row.xmax, row.ymax))
    return {name: np.asarray(b, dtype=np.float64) for name, b in boxes.items()}


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a (n, 4) with every box of b (m, 4)."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    overlap = np.prod(np.clip(high - low, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return overlap / np.maximum(area_a[:, None] + area_b[None, :] - overlap, 1e-9)


def match(detected: np.ndarray, truth: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """(detection, annotation) pairs: detections in score order (as given) take their best free face."""
    if len(detected) == 0 or len(truth) == 0:
        return []
    overlaps, taken, pairs = iou_matrix(detected, truth), set(), []
    for i, row in enumerate(overlaps):
        free = [(value, j) for j, value in enumerate(row) if j not in taken]
        value, j = max(free, default=(0.0, -1))
        if value >= min_iou:
            taken.add(j)
            pairs.append((i, j))
    return pairs


def detect_all(detector, images: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Photo name -> (n, 4) boxes above the detector's threshold, best score first, uncalibrated."""
    found = {}
    for name in names:
        faces = [f for f in detector.find_faces(np.asarray(load_image(images / name))) if f[1] >= detector.threshold]
        faces.sort(key=lambda face: -face[1])
        found[name] = np.asarray([box for box, _ in faces], dtype=np.float64).reshape(-1, 4)
    return found


def recall_precision(found: dict[str, np.ndarray], truth: dict[str, np.ndarray], calibration: BoxCalibration,
                     min_iou: float = 0.5) -> tuple[float, float]:
    matched = sum(len(match(calibration.apply(found[n]), truth[n], min_iou)) for n in found)
    return matched / max(sum(len(truth[n]) for n in found), 1), matched / max(sum(len(found[n]) for n in found), 1)


def calibrate(name: str, images: Path, truth: dict[str, np.ndarray], splits: dict[str, str]) -> BoxCalibration:
    detector = DETECTORS[name](calibration=BoxCalibration())
    train = sorted(n for n, s in splits.items() if s == "train")
    valid = sorted(n for n, s in splits.items() if s == "valid")
    found = detect_all(detector, images, train + valid)
    pairs = [(found[n][i], truth[n][j]) for n in train for i, j in match(found[n], truth[n], 0.3)]
    fitted = BoxCalibration.fit(np.asarray([p[0] for p in pairs]), np.asarray([p[1] for p in pairs]))
    print(f"{name}: fitted on {len(pairs)} matched faces of {len(train)} training photos (threshold "
          f"{detector.threshold}): {fitted}")
    for label, names in (("train", train), ("valid", valid)):
        subset = {n: found[n] for n in names}
        before, after = recall_precision(subset, truth, BoxCalibration()), recall_precision(subset, truth, fitted)
        faces = sum(len(truth[n]) for n in names)
        print(f"  {label} ({len(names)} photos, {faces} faces): recall@0.5 {before[0]:.3f} -> {after[0]:.3f}, "
              f"precision@0.5 {before[1]:.3f} -> {after[1]:.3f}")
    return fitted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a Kaggle-layout folder: images/, train.csv")
    parser.add_argument("--detector", choices=[*DETECTORS, "all"], default="all")
    args = parser.parse_args(argv)
    images, csv_path = args.data / "images", args.data / "train.csv"
    if not csv_path.is_file() or not images.is_dir():
        print(f"error: {args.data}: needs images/ and train.csv (the Kaggle layout)", file=sys.stderr)
        return 2
    splits = split_of_photos(images, csv_path)
    truth = annotated_boxes(csv_path)
    counts = {s: sum(v == s for v in splits.values()) for s in SPLITS}
    print(f"{args.data}: split.py {' '.join(SPLIT_ARGS)}, seed {split.DEFAULT_SEED}: {counts} photos; "
          "test photos are not read")
    fitted = {name: calibrate(name, images, truth, splits) for name in DETECTORS if args.detector in (name, "all")}
    print("\nFor facemask/detectors.py:")
    for name, calibration in fitted.items():
        values = ", ".join(f"{key}={value:.3f}" for key, value in vars(calibration).items())
        print(f"{name.upper()}_CALIBRATION = BoxCalibration({values})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
