"""How good the whole pipeline is on annotated photos: face detector + mask classifier, scored per face.

`python -m facemask.evaluate photos --model FILE IMAGES CSV` (see facemask.evaluate) runs this. Photos
in the Kaggle layout are read with split.py's own CSV reader, `facemask.split.read_rows` (the header's
x1,x2,y1,y2 hold xmin, ymin, xmax, ymax), `face_with_mask_incorrect` counted as no-mask: a mask
under the nose does not protect.
Only annotated photos are scored (a photo with no face row may simply be unlabelled), and, given
split.py's manifest, only the photos of one split: detection must be scored on photos the classifier
never trained on. Faces are labelled at the classifier's decision threshold on P(no-mask) (its sidecar's,
or `--threshold`); the classifier alone is also scored on the annotated boxes, overall and by face size
(the shorter side of the annotated box inside the photo).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from facemask import CLASS_NAMES, DEFAULT_MARGIN, not_a_regular_file, save_json
from facemask.classifier import in_project_order
from facemask.images import ImageError, clip_box, crop_face, load_image
from facemask.metrics import TrueFace, by_size, compute_metrics, format_by_size, score_photos
from facemask.plots import plot_precision_recall
from facemask.split import SplitError, apply_class_rules, read_manifest, read_rows

INCORRECT_AS = "no-mask"
INCORRECT_NOTE = "face_with_mask_incorrect counted as no-mask (a mask under the nose does not protect)"


class EvaluationError(Exception):
    """Bad input found while evaluating; the command prints it as one `error:` line and exits 1."""


def read_truth(csv_path: Path) -> dict[str, list[TrueFace]]:
    """Per photo named in the CSV with at least one face row: its faces, incorrect masks as no-mask."""
    try:
        rows = read_rows(csv_path)  # split.py's reader: the one reader of the Kaggle layout
    except SplitError as error:
        raise EvaluationError(str(error)) from None
    faces, _ = apply_class_rules(rows, INCORRECT_AS)
    truth: dict[str, list[TrueFace]] = {}
    for row, label in faces:
        truth.setdefault(row.name, []).append(TrueFace((row.xmin, row.ymin, row.xmax, row.ymax), label, row.classname))
    if not truth:
        raise EvaluationError(f"{csv_path}: no face rows (face_with_mask, face_no_mask, face_with_mask_incorrect)")
    return truth


def photos_from_list(path: Path) -> list[str]:
    """Photo names, one a line, as the CSV names them; blank lines and # comments skipped."""
    if problem := not_a_regular_file(path):
        raise EvaluationError(f"{path}: {problem}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise EvaluationError(f"{path}: cannot read the photo list ({error})") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def photos_from_manifest(path: Path, split_name: str) -> list[str]:
    """The photos (`source`) of one split of a split.py manifest.csv: e.g. its test photos."""
    try:
        rows = read_manifest(path)
    except SplitError as error:
        raise EvaluationError(str(error)) from None
    names = sorted({row["source"] for row in rows if row["split"] == split_name})
    if not names:
        raise EvaluationError(f"{path}: no photo in the {split_name!r} split")
    return names


def select_photos(truth: dict[str, list[TrueFace]], names: Sequence[str] | None, source: str) -> list[str]:
    """The annotated photos to score: all of them, or the named ones (each must have face rows)."""
    if names is None:
        return sorted(truth)
    unknown = [name for name in names if name not in truth]
    if unknown:
        raise EvaluationError(f"{source}: {len(unknown)} photo(s) without face rows in the CSV, "
                              f"e.g. {unknown[0]!r}")
    return list(dict.fromkeys(names))


def check_images_dir(images: Path) -> None:
    if not images.is_dir():
        raise EvaluationError(f"{images}: images folder not found")
    if not any(path.is_file() for path in images.rglob("*")):
        raise EvaluationError(f"{images}: the images folder is empty")


def _inside(face: TrueFace, width: int, height: int) -> bool:
    """Whether an annotated box keeps any area inside the photo (zero-area rows exist in the real CSV)."""
    x0, y0, x1, y1 = face.box
    return min(x1, width) > max(x0, 0) and min(y1, height) > max(y0, 0)


def _shorter_side(face: TrueFace, width: int, height: int) -> int:
    """The shorter side of an annotated box inside its photo, in whole pixels (as split.py records it)."""
    x0, y0, x1, y1 = clip_box(face.box, width, height)
    return min(x1 - x0, y1 - y0)


def run_photos(detector, images: Path, truth: dict[str, list[TrueFace]], names: Sequence[str],
               margin: float = DEFAULT_MARGIN, progress: bool = True) -> dict:
    """Detect and classify every photo, classify its annotated boxes too, and score it all.

    `detector` is a facemask.detect.FaceMaskDetector built with face_threshold 0 (AP ranks every face it
    finds). `seconds` times detection and classification only, not reading the photos.
    """
    detector.detect(Image.new("RGB", (64, 64)))  # warm up: graphs are traced once per process, not per photo
    found, scored_truth, problems = {}, {}, []
    box_labels, box_probabilities, box_sides, outside = [], [], [], 0
    seconds = 0.0
    for name in tqdm(names, unit="photo", desc="evaluating", file=sys.stderr, disable=not progress):
        try:
            photo = load_image(images / name)
        except ImageError as error:
            problems.append(str(error))
            continue
        faces = [face for face in truth[name] if _inside(face, *photo.size)]
        outside += len(truth[name]) - len(faces)
        started = time.perf_counter()
        found[name] = detector.detect(photo)
        seconds += time.perf_counter() - started
        scored_truth[name] = faces
        if faces:  # the classifier alone, on the annotated boxes cut as training cuts them
            box_probabilities.append(detector.classifier.predict_proba([crop_face(photo, f.box, margin)
                                                                        for f in faces]))
            box_labels += [CLASS_NAMES.index(face.label) for face in faces]
            box_sides += [_shorter_side(face, *photo.size) for face in faces]
    if not found:
        raise EvaluationError(f"{images}: none of the {len(names)} photos could be read (first: {problems[0]})")
    return {"found": found, "truth": scored_truth, "problems": problems, "outside": outside, "seconds": seconds,
            "box_labels": np.array(box_labels, dtype=np.int64), "box_sides": np.array(box_sides, dtype=np.int64),
            "box_probabilities": np.concatenate(box_probabilities) if box_probabilities else np.zeros((0, 2))}


def summarise(run: dict, face_threshold: float, model_class_names: Sequence[str],
              no_mask_threshold: float = 0.5) -> dict:
    """The report: score_photos' numbers (detections kept from `face_threshold`), the classifier on the
    annotated boxes at `no_mask_threshold`, overall and by face size, timing and counts."""
    scores = score_photos(run["found"], run["truth"], face_threshold)
    curves = scores.pop("curves")
    on_boxes = None
    if len(run["box_labels"]):
        probabilities = in_project_order(run["box_probabilities"], model_class_names)
        metrics = compute_metrics(run["box_labels"], probabilities, threshold=no_mask_threshold)
        on_boxes = {key: metrics[key] for key in ("count", "threshold", "accuracy", "balanced_accuracy",
                                                  "no_mask_recall", "roc_auc", "per_class", "confusion_matrix")}
        on_boxes["by_size"] = by_size(run["box_labels"], probabilities, run["box_sides"], no_mask_threshold)
    photos = len(run["found"])
    return scores | {
        "photos": photos,
        "seconds": run["seconds"],
        "photos_per_second": photos / run["seconds"] if run["seconds"] > 0 else None,
        "face_threshold": face_threshold,
        "no_mask_threshold": no_mask_threshold,
        "true_boxes": on_boxes,
        "unreadable_photos": run["problems"],
        "boxes_outside_photo": run["outside"],
        "incorrect_rule": INCORRECT_NOTE,
    }, curves


def write_json(report: dict, path: Path) -> None:
    save_json(path, report)


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_photos_report(report: dict) -> str:
    """The numbers a reader wants first, one line each."""
    ap = report["ap50"]
    lines = [
        f"{report['photos']} photos, {report['faces']} annotated faces ({report['selection']}); {INCORRECT_NOTE}",
        f"detector {report['detector']}, classifier {report['model']}, crop margin {report['margin']}",
        f"mAP@0.5            {_number(report['map50'])}   (AP mask {_number(ap['mask'])}, "
        f"no-mask {_number(ap['no-mask'])}; VOC all-point)",
        f"face recall@0.5    {_number(report['recall50'])}   ({report['matched']}/{report['faces']}; "
        f"faces under 20 px {_number(report['recall50_small'])}, 20 px and more "
        f"{_number(report['recall50_large'])}; at IoU 0.3 {_number(report['recall30'])})",
        f"face precision@0.5 {_number(report['precision50'])}   ({report['detections']} faces found with "
        f"detector score >= {report['face_threshold']})",
        f"accuracy on matched faces {_number(report['accuracy_matched'])}   (no-mask when P(no-mask) >= "
        f"{report['no_mask_threshold']:.4g})",
    ]
    boxes = report["true_boxes"]
    if boxes is not None:
        lines.append(f"classifier on the {boxes['count']} annotated boxes: accuracy {_number(boxes['accuracy'])}, "
                     f"mask recall {_number(boxes['per_class']['mask']['recall'])}, "
                     f"no-mask recall {_number(boxes['no_mask_recall'])}, "
                     f"balanced accuracy {_number(boxes['balanced_accuracy'])}")
        lines += format_by_size(boxes["by_size"])
    speed = _number(report["photos_per_second"], 2)
    lines.append(f"speed              {speed} photos/s ({report['seconds']:.1f} s detecting and classifying)")
    if report["unreadable_photos"]:
        lines.append(f"skipped {len(report['unreadable_photos'])} unreadable photos")
    if report["boxes_outside_photo"]:
        lines.append(f"ignored {report['boxes_outside_photo']} annotated boxes with no area inside their photo")
    return "\n".join(lines)


def choose_photos(args: argparse.Namespace, truth: dict[str, list[TrueFace]]) -> tuple[list[str], str]:
    """The photos the options ask for, and how to say which they are."""
    if args.split_manifest is not None:
        wanted = photos_from_manifest(args.split_manifest, args.split)
        selection = f"the {args.split} photos of {args.split_manifest}"
        return select_photos(truth, wanted, str(args.split_manifest)), selection
    if args.photos_list is not None:
        wanted = photos_from_list(args.photos_list)
        return select_photos(truth, wanted, str(args.photos_list)), f"the photos listed in {args.photos_list}"
    return select_photos(truth, None, str(args.csv)), f"every annotated photo of {args.csv}"


def load_scored_model(path: Path):
    """The classifier a command serves for `path` (any format, facemask.classifier.load_served) and its
    decision threshold on P(no-mask) (0.5 for a model saved without one); ValueError naming the file if
    it is missing or not our classifier."""
    if problem := not_a_regular_file(path):  # answered before paying for the TensorFlow import
        raise ValueError(f"{path}: {problem}")
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    from facemask.classifier import load_served
    from facemask.models import decision_threshold

    classifier = load_served(path)  # which checks the model's classes
    return classifier, decision_threshold(path)


def photos_command(args: argparse.Namespace) -> int:
    """`python -m facemask.evaluate photos ...`: read, select, run, score, report; raises on bad input."""
    if problem := not_a_regular_file(args.csv):
        raise EvaluationError(f"{args.csv}: {problem}")
    if not args.csv.is_file():
        raise EvaluationError(f"{args.csv}: CSV file not found")
    check_images_dir(args.images)
    truth = read_truth(args.csv)
    names, selection = choose_photos(args, truth)
    classifier, no_mask_threshold = load_scored_model(args.model)
    class_names = classifier.class_names
    if args.threshold is not None:
        no_mask_threshold = args.threshold
    from facemask.detection import FaceMaskDetector
    from facemask.detectors import make_face_detector

    face_detector = make_face_detector(args.detector)
    face_threshold = face_detector.threshold if args.face_threshold is None else args.face_threshold
    # Every face the detector returns is kept: AP ranks them all; recall and precision cut at `face_threshold`.
    detector = FaceMaskDetector(classifier, class_names, face_detector=face_detector, margin=args.margin,
                                face_threshold=0.0, no_mask_threshold=no_mask_threshold)
    run = run_photos(detector, args.images, truth, names, margin=args.margin)
    for problem in run["problems"][:20]:
        print(f"warning: {problem}; photo skipped", file=sys.stderr)
    report, curves = summarise(run, face_threshold, class_names, no_mask_threshold)
    name = args.name or f"{args.model.stem}_{args.detector}"
    paths = {"metrics": args.reports / f"{name}_photos_metrics.json",
             "pr_curve": args.reports / f"{name}_photos_pr.png"}
    report |= {"model": str(args.model), "detector": args.detector, "margin": args.margin, "images": str(args.images),
               "csv": str(args.csv), "selection": selection, "paths": {k: str(v) for k, v in paths.items()}}
    plot_precision_recall(curves, report["ap50"], paths["pr_curve"])
    write_json(report, paths["metrics"])  # last: its presence means the report is complete
    print(format_photos_report(report))
    print(f"reports written to {args.reports} ({paths['metrics'].name}, {paths['pr_curve'].name})")
    return 0
