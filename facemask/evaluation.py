"""Evaluation: a classifier scored on a folder of face crops, or with a face detector on annotated photos.

The library of the command facemask.evaluate (`crops`, `photos`); training and the notebook call it too.

Crops: a model runs over a split folder (`data/test/{mask,no-mask}`, listed by facemask.data.split_files
as training lists it) and is judged on facemask.metrics' numbers at its decision threshold on P(no-mask),
also by face size when split.py's manifest gives the annotated boxes' sizes (never guessed from the crop,
which includes a margin). `evaluate_model` writes `<name>_metrics.json` (last), `<name>_confusion.png`,
`<name>_misclassified.png` (even when nothing is misclassified, saying so) and, given a training history,
`<name>_curves.png`. Undefined numbers are None in Python and null in the JSON, never a made-up 0.

Photos: face detector + classifier scored per face on annotated photos in the Kaggle layout
(`face_with_mask_incorrect` counted as no-mask: a mask under the nose does not protect); only annotated
photos, and given split.py's manifest only one split's, so detection is never scored on photos the
classifier trained on. The classifier alone is also scored on the annotated boxes, overall and by size.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tqdm import tqdm

from facemask import CLASS_NAMES, DEFAULT_MARGIN, DEFAULT_THRESHOLD, not_a_regular_file, save_json
from facemask.annotations import AnnotationError, read_truth
from facemask.classifier import Classifier, as_classifier, in_project_order, load_served, predict_files
from facemask.data import split_files
from facemask.detection import FaceMaskDetector
from facemask.detectors import make_face_detector
from facemask.images import ImageError, clip_box, crop_face, load_image
from facemask.metrics import (
    TrueFace,
    by_size,
    compute_metrics,
    misclassified_indices,
    score_photos,
)
from facemask.plots import plot_confusion, plot_history, plot_misclassified, plot_precision_recall
from facemask.sidecar import decision_threshold
from facemask.splitting import SplitError, read_manifest

FACE_SIZE_COLUMNS = ("path", "face_width", "face_height")

if TYPE_CHECKING:
    import keras


def split_images(split_dir: Path | str, class_names: Sequence[str] = CLASS_NAMES) -> tuple[list[Path], np.ndarray]:
    """The crops of `split_dir/<class>/` and their class indices, listed as training lists them
    (facemask.data.split_files: the images directly inside each class folder); FileNotFoundError for a
    missing folder, ValueError when it holds no image."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"split folder not found: {split_dir}")
    files, labels = split_files([split_dir], class_names)
    if not files:
        raise ValueError(f"{split_dir}: no images found in {', '.join(str(split_dir / n) for n in class_names)}")
    return files, labels


def predict_directory(model: Classifier | keras.Model, split_dir: Path | str, batch_size: int = 32,
                      class_names: Sequence[str] = CLASS_NAMES) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Files, true labels and [P(mask), P(no-mask)] rows for every image of a split folder.

    Images are decoded and classified `batch_size` at a time. An unreadable file stops the
    evaluation with an error naming it: skipping it would quietly score a different test set. The
    columns are in CLASS_NAMES order whatever order the model's outputs are in.
    """
    classifier = as_classifier(model)
    files, y_true = split_images(split_dir, class_names)
    rows = []
    for _, outcome in predict_files(classifier, files, batch_size=batch_size):
        if isinstance(outcome, ImageError):
            raise outcome
        rows.append(outcome)
    return files, y_true, in_project_order(np.stack(rows), classifier.class_names).astype(np.float32)


def find_manifest(split_dir: Path | str, manifest: Path | str | None = None) -> Path | None:
    """The manifest that gives a split folder's face sizes: `manifest` if given, else split.py's beside the
    split folders (`<split_dir>/../manifest.csv`) if there is one, else None."""
    if manifest is not None:
        return Path(manifest)
    beside = Path(split_dir).parent / "manifest.csv"
    return beside if beside.is_file() else None


def manifest_face_sizes(manifest: Path) -> dict[Path, int]:
    """Each crop of a split.py manifest (its resolved path) -> the shorter side of its annotated face, px.

    ValueError naming the manifest when it cannot be read or records no face sizes (split.py before
    it did: cut the crops again).
    """
    try:
        rows = read_manifest(manifest, FACE_SIZE_COLUMNS)
    except SplitError as error:
        raise ValueError(f"{error}; a manifest of split.py records each face's size (cut the crops again "
                         "with this version if it is older)") from None
    sizes = {}
    for line, row in enumerate(rows, start=2):
        try:
            sizes[(manifest.parent / row["path"]).resolve()] = min(int(row["face_width"]), int(row["face_height"]))
        except (TypeError, ValueError):
            raise ValueError(f"{manifest}: line {line}: face_width and face_height must be whole numbers") from None
    return sizes


def crop_face_sizes(files: Sequence[Path], manifest: Path | None,
                    strict: bool = True) -> tuple[np.ndarray | None, str]:
    """The shorter side of each crop's annotated face, from `manifest`, and where the sizes come from; or
    (None, why not) when there is no manifest or it lacks some of the crops. A manifest that cannot be read
    or has no face sizes is a ValueError if `strict` (one the user named), else (None, why not)."""
    if manifest is None:
        return None, "by face size: unavailable (no split.py manifest.csv beside the split folder; see --manifest)"
    try:
        sizes = manifest_face_sizes(manifest)
    except ValueError as error:
        if strict:
            raise
        return None, f"by face size: unavailable ({error})"
    found = [sizes.get(Path(file).resolve()) for file in files]
    missing = sum(size is None for size in found)
    if missing:
        return None, f"by face size: unavailable ({missing} of the {len(files)} crops are not in {manifest})"
    return np.array(found, dtype=np.int64), f"face sizes from {manifest}"


def evaluate_model(model: Classifier | keras.Model, split_dir: Path | str, out_dir: Path | str,
                   history: Mapping[str, Sequence[float]] | None = None, name: str = "model",
                   phase_boundary: int | None = None, batch_size: int = 32, threshold: float = DEFAULT_THRESHOLD,
                   manifest: Path | str | None = None) -> dict:
    """Evaluate on a split folder at a decision `threshold` on P(no-mask), write the report files into
    `out_dir`, and return the metrics.

    The returned dict is `compute_metrics`' plus `model`, `split_dir`, `by_size` (see facemask.metrics;
    None, with `by_size_note` saying why, without a usable manifest: `find_manifest`; a `manifest` named
    here must be usable), `misclassified` (file, face size, true label, probabilities of each mistake)
    and `paths` (every file written, by kind). The JSON is written last: its presence means the report
    is complete.
    """
    files, y_true, probabilities = predict_directory(model, split_dir, batch_size=batch_size)
    sizes, note = crop_face_sizes(files, find_manifest(split_dir, manifest), strict=manifest is not None)
    metrics = compute_metrics(y_true, probabilities, threshold=threshold)
    class_names = metrics["class_names"]
    metrics["model"] = name
    metrics["split_dir"] = str(split_dir)
    metrics["by_size"] = None if sizes is None else by_size(y_true, probabilities, sizes, threshold)
    metrics["by_size_note"] = note
    metrics["misclassified"] = [
        {"file": str(files[i]), "face_size": None if sizes is None else int(sizes[i]), "true": class_names[y_true[i]],
         "probabilities": {cls: float(p) for cls, p in zip(class_names, probabilities[i], strict=True)}}
        for i in misclassified_indices(y_true, probabilities, threshold)]
    out_dir = Path(out_dir)
    paths = {"confusion": out_dir / f"{name}_confusion.png", "misclassified": out_dir / f"{name}_misclassified.png"}
    plot_confusion(metrics["confusion_matrix"], class_names, paths["confusion"])
    plot_misclassified(files, y_true, probabilities, paths["misclassified"], class_names=class_names,
                       threshold=threshold, sizes=sizes)
    if history is not None:
        paths["curves"] = out_dir / f"{name}_curves.png"
        plot_history(history, paths["curves"], phase_boundary=phase_boundary)
    paths["metrics"] = out_dir / f"{name}_metrics.json"
    metrics["paths"] = {kind: str(path) for kind, path in paths.items()}
    save_json(paths["metrics"], metrics)
    return metrics


INCORRECT_NOTE = "face_with_mask_incorrect counted as no-mask (a mask under the nose does not protect)"


class EvaluationError(Exception):
    """Bad input found while evaluating; the command prints it as one `error:` line and exits 1."""


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

    `detector` is a facemask.detection.FaceMaskDetector built with face_threshold 0 (AP ranks every face it
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


def report_and_curves(run: dict, face_threshold: float, model_class_names: Sequence[str],
                      no_mask_threshold: float = DEFAULT_THRESHOLD) -> tuple[dict, dict]:
    """The report and the precision-recall curves: score_photos' numbers (detections kept from
    `face_threshold`), the classifier on the annotated boxes at `no_mask_threshold`, overall and by face
    size, timing and counts."""
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


def load_scored_model(path: Path) -> tuple[Classifier, float]:
    """The classifier a command serves for `path` (any format, facemask.classifier.load_served, which
    checks its classes) and its decision threshold on P(no-mask) (the sidecar's, else DEFAULT_THRESHOLD)."""
    return load_served(path), decision_threshold(path)


def choose_photos(truth: dict[str, list[TrueFace]], csv: Path, split_manifest: Path | None = None,
                  split: str = "test", photos_list: Path | None = None) -> tuple[list[str], str]:
    """The photos to score: those of `split` in `split_manifest`, those of `photos_list`, or every
    annotated photo of the CSV; and how to say which they are."""
    if split_manifest is not None:
        wanted = photos_from_manifest(split_manifest, split)
        return select_photos(truth, wanted, str(split_manifest)), f"the {split} photos of {split_manifest}"
    if photos_list is not None:
        wanted = photos_from_list(photos_list)
        return select_photos(truth, wanted, str(photos_list)), f"the photos listed in {photos_list}"
    return select_photos(truth, None, str(csv)), f"every annotated photo of {csv}"


def evaluate_photos(model: Path, images: Path, csv: Path, reports: Path, detector: str, name: str | None = None,
                    margin: float | None = None, threshold: float | None = None, face_threshold: float | None = None,
                    split_manifest: Path | None = None, split: str = "test", photos_list: Path | None = None,
                    progress: bool = True) -> dict:
    """Read, select, run, score and write the report of `evaluate photos`; return the report.

    `margin` and `threshold` default to the model's own (its sidecar's), `face_threshold` to the face
    detector's. Writes `<name>_photos_metrics.json` (last: its presence means the report is complete)
    and `<name>_photos_pr.png` into `reports`. Bad input is an EvaluationError or ValueError naming it.
    """
    if problem := not_a_regular_file(csv):
        raise EvaluationError(f"{csv}: {problem}")
    if not csv.is_file():
        raise EvaluationError(f"{csv}: CSV file not found")
    check_images_dir(images)
    try:
        truth = read_truth(csv)
    except AnnotationError as error:
        raise EvaluationError(str(error)) from None
    names, selection = choose_photos(truth, csv, split_manifest, split, photos_list)
    classifier, no_mask_threshold = load_scored_model(model)
    no_mask_threshold = no_mask_threshold if threshold is None else threshold
    margin = classifier.margin if margin is None else margin
    face_detector = make_face_detector(detector)
    face_threshold = face_detector.threshold if face_threshold is None else face_threshold
    # Every face the detector returns is kept: AP ranks them all; recall and precision cut at `face_threshold`.
    finder = FaceMaskDetector(classifier, classifier.class_names, face_detector=face_detector, margin=margin,
                              face_threshold=0.0, no_mask_threshold=no_mask_threshold)
    run = run_photos(finder, images, truth, names, margin=margin, progress=progress)
    report, curves = report_and_curves(run, face_threshold, classifier.class_names, no_mask_threshold)
    name = name or f"{model.stem}_{detector}"
    paths = {"metrics": reports / f"{name}_photos_metrics.json", "pr_curve": reports / f"{name}_photos_pr.png"}
    report |= {"model": str(model), "detector": detector, "margin": margin, "images": str(images), "csv": str(csv),
               "selection": selection, "paths": {k: str(v) for k, v in paths.items()}}
    plot_precision_recall(curves, report["ap50"], paths["pr_curve"])
    save_json(paths["metrics"], report)  # last: its presence means the report is complete
    return report
