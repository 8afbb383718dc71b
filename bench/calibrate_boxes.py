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
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from reproduce import SPLIT_ARGS  # noqa: E402

from facemask import SPLITS, split, splitting  # noqa: E402
from facemask.annotations import read_truth  # noqa: E402
from facemask.detectors import BoxCalibration, CenterFaceDetector, MTCNNFaceDetector  # noqa: E402
from facemask.images import load_image  # noqa: E402
from facemask.metrics import TrueFace, match_faces  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "kaggle-format"
DETECTORS = {"centerface": CenterFaceDetector, "mtcnn": MTCNNFaceDetector}


def split_of_photos(images: Path, csv_path: Path) -> dict[str, str]:
    """Photo name -> train/valid/test, exactly as split.py assigns them with SPLIT_ARGS."""
    args = split.parse_args([str(images), str(csv_path), *SPLIT_ARGS])
    planned = splitting.plan(Path(args.images), Path(args.csv), args.ratios, incorrect=args.incorrect,
                             margin=args.margin, min_size=args.min_size, seed=args.seed)
    return {crop.source: crop.split for crop in planned.crops}


def detect_all(detector, images: Path, names: list[str]) -> dict[str, list[tuple[tuple, float]]]:
    """Photo name -> (box, score) of the faces above the detector's threshold, uncalibrated."""
    return {name: [face for face in detector.find_faces(np.asarray(load_image(images / name)))
                   if face[1] >= detector.threshold] for name in names}


def calibrated(faces: list[tuple[tuple, float]], calibration: BoxCalibration) -> list[SimpleNamespace]:
    """The faces as facemask.metrics matches them (a box and a score), their boxes calibrated."""
    boxes = calibration.apply(np.asarray([box for box, _ in faces], dtype=np.float64).reshape(-1, 4))
    return [SimpleNamespace(box=tuple(box), score=score) for box, (_, score) in zip(boxes, faces, strict=True)]


def recall_precision(found: dict[str, list], truth: dict[str, list[TrueFace]], calibration: BoxCalibration,
                     min_iou: float = 0.5) -> tuple[float, float]:
    matched = sum(len(match_faces(calibrated(found[n], calibration), truth[n], min_iou)) for n in found)
    return matched / max(sum(len(truth[n]) for n in found), 1), matched / max(sum(len(found[n]) for n in found), 1)


def calibrate(name: str, images: Path, truth: dict[str, np.ndarray], splits: dict[str, str]) -> BoxCalibration:
    detector = DETECTORS[name](calibration=BoxCalibration())
    train = sorted(n for n, s in splits.items() if s == "train")
    valid = sorted(n for n, s in splits.items() if s == "valid")
    found = detect_all(detector, images, train + valid)
    pairs = []  # (detected box, annotated box) of every face matched at IoU 0.3 in the training photos
    for n in train:
        faces = calibrated(found[n], BoxCalibration())
        pairs += [(faces[d].box, truth[n][f].box) for f, d in match_faces(faces, truth[n], 0.3)]
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
    truth = read_truth(csv_path)  # the photo evaluation's reader: all three face classes
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
