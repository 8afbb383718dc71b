"""Evaluation: the numbers, the confusion matrix, the training curves and the mistakes.

As commands (one `error:` line and exit 2 for a bad command line, 1 for bad input; see facemask.cli):

    python -m facemask.evaluate crops --model FILE SPLIT_DIR [--reports DIR]
    python -m facemask.evaluate photos --model FILE IMAGES CSV [--detector NAME] [--reports DIR]
                                [--split-manifest data/manifest.csv [--split test] | --photos-list FILE]

`crops` scores the classifier on a folder of face crops (`data/test`), as training does at its end.
`photos` scores face detector and classifier together on annotated photos in the Kaggle layout
(see facemask.evaluate_photos); `--split-manifest` keeps only the photos of one split.py split,
so detection is never scored on photos the classifier trained on.

A model is run over a split folder (`data/test/{mask,no-mask}`) and judged on:

- accuracy and balanced accuracy (the mean of the two recalls, honest under class imbalance),
- precision / recall / F1 / support per class, and ROC AUC with P(no-mask) as the score,
- the confusion matrix, rows true [mask, no-mask] and columns predicted, as the seed reports it,
- recall of `no-mask`: the share of unmasked faces the model catches, the number that matters
  for safety, so it is reported on its own line.

`evaluate_model` writes `<name>_metrics.json`, `<name>_confusion.png`, `<name>_misclassified.png`
and, when a training history is given, `<name>_curves.png`. When nothing is misclassified the
misclassified image is still written, saying so, so a report folder always has the same files.
Undefined numbers (recall of a class absent from the split, precision of a class never predicted,
AUC when the split holds one class) are None in Python and null in the JSON, never a made-up 0;
`roc_auc_note` then says why.

The plots are built on `matplotlib.figure.Figure` rather than pyplot: no backend is selected or
switched, so this works headless and leaves a notebook's inline backend alone, and every plot
function returns its Figure for a notebook to display.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from facemask import CLASS_NAMES, DEFAULT_MARGIN, IMAGE_EXTENSIONS, MAX_MARGIN, SPLITS, save_atomically
from facemask.cli import ArgumentParser, fail, number_in, run
from facemask.images import ImageError, load_image
from facemask.predict import predict_files

if TYPE_CHECKING:
    import keras

ACCURACY_KEYS = ("accuracy", "categorical_accuracy", "acc")
POSITIVE_CLASS = "no-mask"  # the class whose detection matters: the positive class of the ROC curve


def _number(value: float) -> float | None:
    """A plain float for JSON, or None for an undefined (NaN) value."""
    value = float(value)
    return None if math.isnan(value) else value


def compute_metrics(y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str] = CLASS_NAMES) -> dict:
    """Accuracy, balanced accuracy, per-class scores, ROC AUC and the confusion matrix.

    `y_true` holds class indices (0 = mask, 1 = no-mask); `probabilities` one row per example in
    the same class order. The predicted class is the most probable one (a tie goes to the first).
    """
    class_names = list(class_names)
    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(class_names) != 2 or POSITIVE_CLASS not in class_names:
        raise ValueError(f"expected the two classes {CLASS_NAMES}, got {class_names}")
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_names):
        raise ValueError(f"probabilities must have shape (n, {len(class_names)}), got {probabilities.shape}")
    if y_true.shape != (len(probabilities),):
        raise ValueError(f"{y_true.shape[0] if y_true.ndim else 0} labels for {len(probabilities)} predictions")
    if len(y_true) == 0:
        raise ValueError("no predictions to evaluate")
    if not np.isin(y_true, range(len(class_names))).all():
        raise ValueError(f"labels must be class indices 0..{len(class_names) - 1}, got {sorted(set(y_true.tolist()))}")

    labels = list(range(len(class_names)))
    y_pred = probabilities.argmax(axis=1)
    # zero_division=nan: a score with an empty denominator is undefined, not 0.
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=np.nan
    )
    with warnings.catch_warnings():
        # With one class in y_true, balanced accuracy is that class's recall; sklearn warns about it.
        warnings.simplefilter("ignore", UserWarning)
        balanced_accuracy = balanced_accuracy_score(y_true, y_pred)

    positive = class_names.index(POSITIVE_CLASS)
    present = sorted(set(y_true.tolist()))
    if len(present) == 2:
        roc_auc, roc_auc_note = float(roc_auc_score(y_true == positive, probabilities[:, positive])), None
    else:
        roc_auc = None
        roc_auc_note = f"undefined: only one class ({class_names[present[0]]}) in the true labels"

    per_class = {
        name: {
            "precision": _number(precision[i]),
            "recall": _number(recall[i]),
            "f1": _number(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "count": len(y_true),
        "class_names": class_names,
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy),
        "no_mask_recall": per_class[POSITIVE_CLASS]["recall"],
        "roc_auc": roc_auc,
        "roc_auc_note": roc_auc_note,
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def list_split(split_dir: Path | str, class_names: Sequence[str] = CLASS_NAMES) -> tuple[list[Path], np.ndarray]:
    """The image files of `split_dir/<class>/` (searched recursively, as Keras does) and their labels."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"split folder not found: {split_dir}")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        folder = split_dir / name
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        files += found
        labels += [label] * len(found)
    if not files:
        folders = ", ".join(str(split_dir / name) for name in class_names)
        raise ValueError(f"{split_dir}: no images found in {folders}")
    return files, np.array(labels, dtype=np.int64)


def predict_directory(
    model: keras.Model, split_dir: Path | str, batch_size: int = 32, class_names: Sequence[str] = CLASS_NAMES
) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Files, true labels and [P(mask), P(no-mask)] rows for every image of a split folder.

    Images are decoded and classified `batch_size` at a time. An unreadable file stops the
    evaluation with an error naming it: skipping it would quietly score a different test set.
    """
    files, y_true = list_split(split_dir, class_names)
    rows = []
    for _, outcome in predict_files(model, files, batch_size=batch_size):
        if isinstance(outcome, ImageError):
            raise outcome
        rows.append(outcome)
    return files, y_true, np.stack(rows).astype(np.float32)


def _save(figure: Figure, path: Path | str | None) -> None:
    """Write a PNG through a temporary file, so an interrupted run leaves no half-written image."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomically(path, lambda target: figure.savefig(target, format="png", dpi=100, bbox_inches="tight"))


def plot_history(
    history: Mapping[str, Sequence[float]], path: Path | str | None = None, phase_boundary: int | None = None
) -> Figure:
    """Loss and accuracy per epoch, train against validation (a Keras `History.history` dict).

    For VGG16 the two phases' histories are concatenated; `phase_boundary` is the number of
    phase-1 epochs, and a dashed line marks where fine-tuning starts (no line when one phase
    has all the epochs, e.g. phase 2 stopped before its first epoch).
    """
    if "loss" not in history or len(history["loss"]) == 0:
        raise ValueError(f"history has no 'loss' values (keys: {sorted(history)})")
    epochs = np.arange(1, len(history["loss"]) + 1)
    if phase_boundary is not None and not 0 <= phase_boundary <= len(epochs):
        raise ValueError(f"phase_boundary must be between 0 and {len(epochs)} epochs, got {phase_boundary}")
    accuracy_key = next((key for key in ACCURACY_KEYS if key in history), None)
    panels = [("loss", "loss")] + ([(accuracy_key, "accuracy")] if accuracy_key else [])

    figure = Figure(figsize=(5.5 * len(panels), 4))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, title) in zip(axes, panels, strict=True):
        ax.plot(epochs, history[key], "o-", label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "o-", label="validation")
        if phase_boundary is not None and 0 < phase_boundary < len(epochs):
            ax.axvline(phase_boundary + 0.5, color="grey", linestyle="--", label="fine-tuning starts")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(figure, path)
    return figure


def plot_confusion(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path | str | None = None
) -> Figure:
    """The confusion matrix, rows true and columns predicted, with counts and row percentages."""
    matrix = np.asarray(matrix)
    figure = Figure(figsize=(4.8, 4.2))
    ax = figure.subplots()
    ax.imshow(matrix, cmap="Blues", vmin=0)
    row_totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_totals, out=np.zeros(matrix.shape, dtype=float), where=row_totals > 0)
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(column, row, f"{count}\n{shares[row, column]:.1%}", ha="center", va="center", color=colour)
    ax.set_xticks(range(len(class_names)), labels=class_names)
    ax.set_yticks(range(len(class_names)), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row % of true class)")
    _save(figure, path)
    return figure


def misclassified_indices(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Indices of the wrong predictions, the most confident mistakes first."""
    probabilities = np.asarray(probabilities)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(y_true))
    return wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")]


def plot_images(
    images: Sequence[Image.Image | np.ndarray],
    titles: Sequence[str],
    columns: int = 5,
    path: Path | str | None = None,
) -> Figure:
    """A grid of images with a title each: PIL images, or RGB arrays in 0-255 (e.g. augmented samples)."""
    if len(images) == 0 or len(images) != len(titles):
        raise ValueError(f"need one title per image and at least one image, got {len(images)} and {len(titles)}")
    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    title_lines = max(len(title.splitlines()) for title in titles)
    # constrained layout sizes the gaps to the titles, so multi-line titles never overlap the row above.
    figure = Figure(figsize=(2.4 * columns, (2.3 + 0.2 * title_lines) * rows + 0.4), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, image, title in zip(axes, images, titles, strict=False):
        if isinstance(image, Image.Image):
            image = image.convert("RGB")  # a copy, so the thumbnail below leaves the caller's image alone
            image.thumbnail((256, 256))  # photos can be large; a grid cell needs a thumbnail
        else:
            image = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        ax.imshow(image)
        ax.set_title(title, fontsize=8)
    for ax in axes:
        ax.axis("off")
    _save(figure, path)
    return figure


def plot_misclassified(
    files: Sequence[Path | str],
    y_true: np.ndarray,
    probabilities: np.ndarray,
    path: Path | str | None = None,
    max_images: int = 25,
    class_names: Sequence[str] = CLASS_NAMES,
) -> Figure:
    """A grid of the misclassified crops, most confident mistakes first, with true label and both probabilities.

    With no mistakes the figure says so in words, so the report file still exists and reads right.
    """
    wrong = misclassified_indices(y_true, probabilities)
    if len(wrong) == 0:
        figure = Figure(figsize=(6, 1.5))
        figure.text(0.5, 0.5, f"No misclassified crops: all {len(files)} predictions are correct.",
                    ha="center", va="center", fontsize=12)
        _save(figure, path)
        return figure
    shown = wrong[:max_images]
    titles = []
    for index in shown:
        odds = "  ".join(f"P({name})={p:.2f}" for name, p in zip(class_names, probabilities[index], strict=True))
        titles.append(f"{Path(files[index]).name}\ntrue: {class_names[y_true[index]]}\n{odds}")
    figure = plot_images([load_image(files[index]) for index in shown], titles, columns=5)
    figure.suptitle(f"{len(wrong)} misclassified of {len(files)} (showing {len(shown)}, most confident first)")
    _save(figure, path)
    return figure


def evaluate_model(
    model: keras.Model,
    split_dir: Path | str,
    out_dir: Path | str,
    history: Mapping[str, Sequence[float]] | None = None,
    name: str = "model",
    phase_boundary: int | None = None,
    batch_size: int = 32,
) -> dict:
    """Evaluate on a split folder, write the report files into `out_dir`, and return the metrics.

    The returned dict is `compute_metrics`' plus `model`, `split_dir`, `misclassified` (file,
    true label, probabilities of each mistake) and `paths` (every file written, by kind). The
    JSON is written last, so its presence means the report is complete.
    """
    files, y_true, probabilities = predict_directory(model, split_dir, batch_size=batch_size)
    metrics = compute_metrics(y_true, probabilities)
    class_names = metrics["class_names"]
    metrics["model"] = name
    metrics["split_dir"] = str(split_dir)
    metrics["misclassified"] = [
        {
            "file": str(files[i]),
            "true": class_names[y_true[i]],
            "probabilities": {cls: float(p) for cls, p in zip(class_names, probabilities[i], strict=True)},
        }
        for i in misclassified_indices(y_true, probabilities)
    ]
    out_dir = Path(out_dir)
    paths = {
        "confusion": out_dir / f"{name}_confusion.png",
        "misclassified": out_dir / f"{name}_misclassified.png",
    }
    plot_confusion(metrics["confusion_matrix"], class_names, paths["confusion"])
    plot_misclassified(files, y_true, probabilities, paths["misclassified"], class_names=class_names)
    if history is not None:
        paths["curves"] = out_dir / f"{name}_curves.png"
        plot_history(history, paths["curves"], phase_boundary=phase_boundary)
    paths["metrics"] = out_dir / f"{name}_metrics.json"
    metrics["paths"] = {kind: str(path) for kind, path in paths.items()}
    payload = json.dumps(metrics, indent=2) + "\n"
    save_atomically(paths["metrics"], lambda target: target.write_text(payload))
    return metrics


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_report(metrics: Mapping) -> str:
    """A short text report; no-mask recall, the safety number, has its own line."""
    class_names = metrics["class_names"]
    title = f"{metrics['model']}: " if "model" in metrics else ""
    auc = _score(metrics["roc_auc"]) if metrics["roc_auc"] is not None else f"n/a ({metrics['roc_auc_note']})"
    lines = [
        f"{title}{metrics['count']} images",
        f"accuracy           {_score(metrics['accuracy'])}",
        f"balanced accuracy  {_score(metrics['balanced_accuracy'])}",
        f"ROC AUC            {auc}",
        f"no-mask recall     {_score(metrics['no_mask_recall'])}   (share of unmasked faces caught)",
        "",
        f"{'':10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for name in class_names:
        scores = metrics["per_class"][name]
        lines.append(f"{name:10}{_score(scores['precision']):>10}{_score(scores['recall']):>10}"
                     f"{_score(scores['f1']):>10}{scores['support']:>9}")
    lines += ["", "confusion matrix (rows true, columns predicted)"]
    lines.append(f"{'':10}" + "".join(f"{name:>9}" for name in class_names))
    for name, row in zip(class_names, metrics["confusion_matrix"], strict=True):
        lines.append(f"{name:10}" + "".join(f"{count:>9}" for count in row))
    return "\n".join(lines)


def comparison_table(metrics_by_model: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per model: the headline numbers side by side (None becomes NaN)."""
    if not metrics_by_model:
        raise ValueError("no models to compare")
    rows = {}
    for model_name, metrics in metrics_by_model.items():
        row = {
            "accuracy": metrics["accuracy"],
            "balanced accuracy": metrics["balanced_accuracy"],
            "no-mask recall": metrics["no_mask_recall"],
            "ROC AUC": metrics["roc_auc"],
        }
        for class_name, scores in metrics["per_class"].items():
            row[f"{class_name} precision"] = scores["precision"]
            row[f"{class_name} recall"] = scores["recall"]
            row[f"{class_name} F1"] = scores["f1"]
        row["images"] = metrics["count"]
        rows[model_name] = row
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
    numbers = table.columns.drop("images")
    table[numbers] = table[numbers].astype(float)  # None -> NaN
    return table


# ---------------------------------------------------------------- the commands


def build_parser() -> argparse.ArgumentParser:
    # Not facemask.detect here: it loads TensorFlow, and --help or a usage error should answer at once.
    from facemask.detectors import DEFAULT_DETECTOR, FACE_DETECTORS

    parser = ArgumentParser(prog="python -m facemask.evaluate", description="Score a saved classifier on face crops "
                     "or, with a face detector, on annotated photos.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{crops,photos}")
    crops = commands.add_parser("crops", help="the classifier on a folder of crops (SPLIT_DIR/mask, SPLIT_DIR/no-mask)")
    photos = commands.add_parser("photos", help="face detector + classifier on annotated photos (Kaggle layout)")
    for command in (crops, photos):
        command.add_argument("--model", type=Path, required=True, metavar="FILE",
                             help="a .keras model saved by facemask")
    crops.add_argument("split_dir", type=Path, help="e.g. data/test")
    photos.add_argument("images", type=Path, help="folder of the photos the CSV names")
    photos.add_argument("csv", type=Path,
                        help="train.csv: name,x1,x2,y1,y2,classname (x1..y2 hold xmin,ymin,xmax,ymax)")
    photos.add_argument("--detector", choices=list(FACE_DETECTORS), default=DEFAULT_DETECTOR, help="face detector")
    photos.add_argument("--threshold", type=number_in(float, 0, 1), default=None,
                        help="detector score from which a face counts for recall and precision, 0 to 1 (default: "
                             "the detector's own, as detection uses it); AP ranks every face found")
    photos.add_argument("--margin", type=number_in(float, 0, MAX_MARGIN), default=DEFAULT_MARGIN,
                        help=f"crop margin, 0 to {MAX_MARGIN:g}, as the model was trained with")
    chosen = photos.add_mutually_exclusive_group()
    chosen.add_argument("--split-manifest", type=Path, metavar="MANIFEST",
                        help="split.py's manifest.csv: score only the photos of --split")
    chosen.add_argument("--photos-list", type=Path, metavar="FILE", help="score only these photos (one name a line)")
    photos.add_argument("--split", choices=SPLITS, default="test", help="with --split-manifest: which split's photos")
    for command in (crops, photos):
        command.add_argument("--reports", type=Path, default=Path("reports"), help="folder for the reports")
        command.add_argument("--name", default=None, help="report file prefix (default: the model's file name)")
    return parser


def crops_command(args: argparse.Namespace) -> int:
    from facemask.evaluate_photos import load_classifier

    model, class_names = load_classifier(args.model)
    if list(class_names) != CLASS_NAMES:
        raise ValueError(f"{args.model}: classes {class_names}, expected them in the order {CLASS_NAMES}")
    metrics = evaluate_model(model, args.split_dir, args.reports, name=args.name or args.model.stem)
    print(format_report(metrics))
    print(f"reports written to {args.reports} ({metrics['paths']['metrics']})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed
        return exit_.code if isinstance(exit_.code, int) else 0
    from facemask.evaluate_photos import EvaluationError, photos_command

    try:
        return crops_command(args) if args.command == "crops" else photos_command(args)
    except (EvaluationError, ImageError, FileNotFoundError, ValueError, OSError) as error:
        return fail(error)


if __name__ == "__main__":
    run(main)
