"""The figures: training curves, the confusion matrix, grids of images, of augmentations and of mistakes,
precision-recall.

facemask.evaluation writes them into its reports; the notebook shows them. Each plot function returns
its Figure, and also writes it as a PNG when given a path (through a temporary file, so an
interrupted run leaves no half-written image).

The plots are built on `matplotlib.figure.Figure` rather than pyplot: no backend is selected or
switched, so this works headless and leaves a notebook's inline backend alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from facemask import CLASS_NAMES, save_atomically
from facemask.images import load_image
from facemask.metrics import misclassified_indices

ACCURACY_KEYS = ("accuracy", "categorical_accuracy", "acc")


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


def plot_augmentations(original: np.ndarray, variants: Mapping[str, Sequence[np.ndarray]], columns: int = 6,
                       path: Path | str | None = None) -> Figure:
    """One row per augmentation: the `original` face (RGB, 0-255), then up to `columns` of the draws that
    changed it (`variants[name]`: the augmentation applied to copies of the face).

    Several augmentations touch only some of the faces, so each row's label says how many of its draws
    changed the face; a row where none did shows its first draws, titled "as is".
    """
    if not variants or any(len(images) == 0 for images in variants.values()):
        raise ValueError(f"need at least one image per augmentation, got "
                         f"{ {name: len(images) for name, images in variants.items()} }")
    original = np.clip(np.asarray(original, dtype=np.float32), 0, 255)
    figure = Figure(figsize=(1.5 * (1 + columns), 1.55 * len(variants) + 0.3), layout="constrained")
    axes = figure.subplots(len(variants), 1 + columns, squeeze=False)
    for row, (name, images) in zip(axes, variants.items(), strict=True):
        images = [np.clip(np.asarray(image, dtype=np.float32), 0, 255) for image in images]
        changed = [index for index, image in enumerate(images) if not np.array_equal(image, original)]
        shown = (changed or range(len(images)))[:columns]
        row[0].imshow(original.astype(np.uint8))
        row[0].set_title("original", fontsize=8)
        row[0].set_ylabel(f"{name}\n{len(changed)} of {len(images)} changed", fontsize=9)
        for ax, index in zip(row[1:], shown, strict=False):
            ax.imshow(images[index].astype(np.uint8))
            ax.set_title(f"draw {index + 1}" if changed else "as is", fontsize=8)
        for ax in row:  # no ticks or frame, but the row's label stays (axis("off") would hide it)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
    _save(figure, path)
    return figure


def plot_misclassified(
    files: Sequence[Path | str],
    y_true: np.ndarray,
    probabilities: np.ndarray,
    path: Path | str | None = None,
    max_images: int = 25,
    class_names: Sequence[str] = CLASS_NAMES,
    threshold: float = 0.5,
    sizes: Sequence[int] | None = None,
) -> Figure:
    """A grid of the crops misclassified at the decision `threshold` on P(no-mask), most confident mistakes
    first, with true label, both probabilities and, given `sizes`, the face's size (its annotated box's
    shorter side, px).

    With no mistakes the figure says so in words, so the report file still exists and reads right.
    """
    wrong = misclassified_indices(y_true, probabilities, threshold)
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
        size = "" if sizes is None else f", face {int(sizes[index])} px"
        titles.append(f"{Path(files[index]).name}\ntrue: {class_names[y_true[index]]}{size}\n{odds}")
    figure = plot_images([load_image(files[index]) for index in shown], titles, columns=5)
    figure.suptitle(f"{len(wrong)} misclassified of {len(files)} (showing {len(shown)}, most confident first)")
    _save(figure, path)
    return figure


def plot_precision_recall(curves: Mapping[str, Mapping[str, Sequence[float]]],
                          ap: Mapping[str, float | None], path: Path | str | None = None) -> Figure:
    """Precision against recall per class at IoU 0.5, the AP in the legend."""
    figure = Figure(figsize=(5.5, 4.5))
    ax = figure.subplots()
    for label, curve in curves.items():
        value = "n/a" if ap[label] is None else f"{ap[label]:.3f}"
        ax.plot(curve["recall"], curve["precision"], label=f"{label} (AP@0.5 {value})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("faces found and classified, IoU 0.5")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    _save(figure, path)
    return figure
