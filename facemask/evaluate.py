"""Evaluation: a classifier run over a folder of face crops, its metrics and report files, the commands.

As commands (one `error:` line and exit 2 for a bad command line, 1 for bad input; see facemask.cli):

    python -m facemask.evaluate crops --model FILE SPLIT_DIR [--threshold P] [--manifest FILE] [--reports DIR]
    python -m facemask.evaluate photos --model FILE IMAGES CSV [--detector NAME] [--reports DIR]
                                [--split-manifest data/manifest.csv [--split test] | --photos-list FILE]

`crops` scores the classifier on a folder of face crops (`data/test`), as training does at its end, and
by face size: the shorter side of each face's annotated box, which split.py's manifest records
(`SPLIT_DIR/../manifest.csv` is found by itself, `--manifest` names another; without one the report
says by-size is unavailable rather than guess a size from the crop, which includes a margin).
`photos` scores face detector and classifier together on annotated photos in the Kaggle layout
(see facemask.evaluate_photos); `--split-manifest` keeps only the photos of one split.py split,
so detection is never scored on photos the classifier trained on.

A model is run over a split folder (`data/test/{mask,no-mask}`) and judged on the numbers of
facemask.metrics at its decision threshold on P(no-mask) (the one its sidecar holds, chosen on validation
at training time, or `--threshold`): accuracy, balanced accuracy, per-class scores, ROC AUC, the
confusion matrix, and mask and no-mask recall, each on its own line: no-mask recall is the number that
matters for safety, mask recall the one that says whether masked people are left alone.

`evaluate_model` writes `<name>_metrics.json`, `<name>_confusion.png`, `<name>_misclassified.png`
and, when a training history is given, `<name>_curves.png` (drawn by facemask.plots). When nothing
is misclassified the misclassified image is still written, saying so, so a report folder always
has the same files. Undefined numbers are None in Python and null in the JSON, never a made-up 0.
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from facemask import CLASS_NAMES, DEFAULT_MARGIN, IMAGE_EXTENSIONS, MAX_MARGIN, SPLITS, save_json
from facemask.cli import ArgumentParser, add_threshold_options, fail, number_in, run
from facemask.images import ImageError
from facemask.metrics import by_size, compute_metrics, format_by_size, misclassified_indices
from facemask.plots import plot_confusion, plot_history, plot_misclassified
from facemask.predict import predict_files
from facemask.split import SplitError, read_manifest

FACE_SIZE_COLUMNS = ("path", "face_width", "face_height")

if TYPE_CHECKING:
    import keras

    from facemask.classifier import Classifier


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
    model: Classifier | keras.Model, split_dir: Path | str, batch_size: int = 32,
    class_names: Sequence[str] = CLASS_NAMES,
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


def evaluate_model(
    model: Classifier | keras.Model,
    split_dir: Path | str,
    out_dir: Path | str,
    history: Mapping[str, Sequence[float]] | None = None,
    name: str = "model",
    phase_boundary: int | None = None,
    batch_size: int = 32,
    threshold: float = 0.5,
    manifest: Path | str | None = None,
) -> dict:
    """Evaluate on a split folder at a decision `threshold` on P(no-mask), write the report files into
    `out_dir`, and return the metrics.

    The returned dict is `compute_metrics`' plus `model`, `split_dir`, `by_size` (see facemask.metrics;
    None, with `by_size_note` saying why, without a usable manifest: `find_manifest`; a `manifest` named
    here must be usable), `misclassified` (file,
    face size, true label, probabilities of each mistake) and `paths` (every file written, by kind). The
    JSON is written last, so its presence means the report is complete.
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
        {
            "file": str(files[i]),
            "face_size": None if sizes is None else int(sizes[i]),
            "true": class_names[y_true[i]],
            "probabilities": {cls: float(p) for cls, p in zip(class_names, probabilities[i], strict=True)},
        }
        for i in misclassified_indices(y_true, probabilities, threshold)
    ]
    out_dir = Path(out_dir)
    paths = {
        "confusion": out_dir / f"{name}_confusion.png",
        "misclassified": out_dir / f"{name}_misclassified.png",
    }
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


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_report(metrics: Mapping) -> str:
    """A short text report at the decision threshold; mask and no-mask recall have their own lines, and
    the numbers by face size follow when known."""
    class_names = metrics["class_names"]
    title = f"{metrics['model']}: " if "model" in metrics else ""
    auc = _score(metrics["roc_auc"]) if metrics["roc_auc"] is not None else f"n/a ({metrics['roc_auc_note']})"
    lines = [
        f"{title}{metrics['count']} images, decision threshold on P(no-mask) {metrics['threshold']:.4g}",
        f"accuracy           {_score(metrics['accuracy'])}",
        f"balanced accuracy  {_score(metrics['balanced_accuracy'])}",
        f"ROC AUC            {auc}",
        f"no-mask recall     {_score(metrics['no_mask_recall'])}   (share of unmasked faces caught)",
        f"mask recall        {_score(metrics['per_class']['mask']['recall'])}   (share of masked faces left alone)",
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
    if "by_size" in metrics:
        lines += ["", *format_by_size(metrics["by_size"], metrics.get("by_size_note", ""))]
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
            "mask recall": metrics["per_class"]["mask"]["recall"],
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
                             help="a model saved by facemask: .keras, or its .onnx/.tflite export")
    crops.add_argument("split_dir", type=Path, help="e.g. data/test")
    crops.add_argument("--manifest", type=Path, default=None, metavar="FILE",
                       help="split.py's manifest.csv, for the face sizes (default: SPLIT_DIR/../manifest.csv if "
                            "there is one)")
    photos.add_argument("images", type=Path, help="folder of the photos the CSV names")
    photos.add_argument("csv", type=Path,
                        help="train.csv: name,x1,x2,y1,y2,classname (x1..y2 hold xmin,ymin,xmax,ymax)")
    photos.add_argument("--detector", choices=list(FACE_DETECTORS), default=DEFAULT_DETECTOR, help="face detector")
    photos.add_argument("--margin", type=number_in(float, 0, MAX_MARGIN), default=DEFAULT_MARGIN,
                        help=f"crop margin, 0 to {MAX_MARGIN:g}, as the model was trained with")
    chosen = photos.add_mutually_exclusive_group()
    chosen.add_argument("--split-manifest", type=Path, metavar="MANIFEST",
                        help="split.py's manifest.csv: score only the photos of --split")
    chosen.add_argument("--photos-list", type=Path, metavar="FILE", help="score only these photos (one name a line)")
    photos.add_argument("--split", choices=SPLITS, default="test", help="with --split-manifest: which split's photos")
    add_threshold_options(crops, face=False)
    add_threshold_options(photos)  # AP ranks every face found; recall and precision count from --face-threshold
    for command in (crops, photos):
        command.add_argument("--reports", type=Path, default=Path("reports"), help="folder for the reports")
        command.add_argument("--name", default=None, help="report file prefix (default: the model's file name)")
    return parser


def crops_command(args: argparse.Namespace) -> int:
    from facemask.evaluate_photos import load_scored_model

    classifier, threshold = load_scored_model(args.model)
    if classifier.class_names != CLASS_NAMES:
        raise ValueError(f"{args.model}: classes {classifier.class_names}, expected them in the order {CLASS_NAMES}")
    metrics = evaluate_model(classifier, args.split_dir, args.reports, name=args.name or args.model.stem,
                             threshold=threshold if args.threshold is None else args.threshold,
                             manifest=args.manifest)
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
