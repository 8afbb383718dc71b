"""evaluate: metrics checked against hand-computed values, the report files, the plots and tables."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import build_colour_model, colour_probabilities
from matplotlib.figure import Figure
from PIL import Image

from facemask.evaluate import comparison_table, evaluate_model, format_report, predict_directory
from facemask.images import ImageError
from facemask.metrics import compute_metrics
from facemask.plots import plot_confusion, plot_history, plot_images, plot_misclassified

HISTORY = {
    "loss": [0.9, 0.6, 0.5, 0.4],
    "val_loss": [1.0, 0.7, 0.65, 0.6],
    "accuracy": [0.6, 0.75, 0.8, 0.85],
    "val_accuracy": [0.55, 0.7, 0.72, 0.8],
}


def p_no_mask(rgb: tuple[int, int, int]) -> float:
    """The colour model's P(no-mask) for a uniform image, by hand."""
    return float(colour_probabilities(rgb)[1])


# Files of a small test split, true class -> [(relative path, colour)]. The purple "mask" crop is
# bluer than red, so the model calls it no-mask (P(no-mask) = 0.73): the one mistake.
SPLIT = {
    "mask": [("red_0.png", (200, 40, 40)), ("red_1.png", (170, 60, 50)), ("red_2.png", (220, 90, 80)),
             ("purple.png", (120, 40, 170)), ("sub/red_3.PNG", (190, 20, 60))],
    "no-mask": [("blue_0.png", (30, 60, 220)), ("blue_1.png", (40, 40, 180)), ("blue_2.png", (60, 90, 230))],
}


def make_split(root: Path, split: dict[str, list[tuple[str, tuple[int, int, int]]]]) -> Path:
    for class_name, files in split.items():
        for i, (name, rgb) in enumerate(files):
            path = root / class_name / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20 + i, 18), rgb).save(path, format="PNG")
    return root


@pytest.fixture(scope="module")
def colour_model() -> keras.Model:
    return build_colour_model()


def hand_made_predictions() -> tuple[np.ndarray, np.ndarray]:
    """6 mask and 4 no-mask examples; scores P(no-mask) chosen so every number is easy by hand."""
    y_true = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.55, 0.7, 0.05, 0.9, 0.8, 0.6, 0.35])
    return y_true, np.column_stack([1 - scores, scores])


def test_metrics_match_hand_computed_values():
    metrics = compute_metrics(*hand_made_predictions())
    # Predicted: mask rows 0-5 -> 4 right, 2 called no-mask (0.55, 0.7); no-mask rows -> 3 right, 1 called mask (0.35).
    assert metrics["confusion_matrix"] == [[4, 2], [1, 3]]  # rows true [mask, no-mask], columns predicted
    assert metrics["count"] == 10
    assert metrics["accuracy"] == pytest.approx(7 / 10)
    assert metrics["balanced_accuracy"] == pytest.approx((4 / 6 + 3 / 4) / 2)  # 17/24
    mask, no_mask = metrics["per_class"]["mask"], metrics["per_class"]["no-mask"]
    assert mask["precision"] == pytest.approx(4 / 5) and no_mask["precision"] == pytest.approx(3 / 5)
    assert mask["recall"] == pytest.approx(2 / 3) and no_mask["recall"] == pytest.approx(3 / 4)
    assert mask["f1"] == pytest.approx(8 / 11) and no_mask["f1"] == pytest.approx(2 / 3)
    assert (mask["support"], no_mask["support"]) == (6, 4)
    assert metrics["no_mask_recall"] == pytest.approx(3 / 4)
    # AUC: of the 4 x 6 (no-mask, mask) pairs, 21 rank the no-mask crop higher (6 + 6 + 5 + 4).
    assert metrics["roc_auc"] == pytest.approx(21 / 24)
    assert metrics["roc_auc_note"] is None
    json.dumps(metrics)  # plain Python types throughout


def test_metrics_with_one_class_only():
    y_true = np.zeros(4, dtype=int)
    scores = np.array([0.1, 0.2, 0.8, 0.3])
    metrics = compute_metrics(y_true, np.column_stack([1 - scores, scores]))
    assert metrics["confusion_matrix"] == [[3, 1], [0, 0]]
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["balanced_accuracy"] == pytest.approx(0.75)  # the recall of the only class present
    assert metrics["roc_auc"] is None and "only one class (mask)" in metrics["roc_auc_note"]
    assert metrics["no_mask_recall"] is None  # no unmasked face to catch: undefined, not 0 or 1
    assert metrics["per_class"]["no-mask"] == {"precision": 0.0, "recall": None, "f1": 0.0, "support": 0}

    all_right = compute_metrics(y_true, np.tile([0.9, 0.1], (4, 1)))
    assert all_right["per_class"]["no-mask"]["precision"] is None  # never predicted
    assert "n/a" in format_report(all_right)


def test_metrics_reject_inconsistent_input():
    y_true, probabilities = hand_made_predictions()
    with pytest.raises(ValueError, match="labels for"):
        compute_metrics(y_true[:-1], probabilities)
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(y_true, probabilities[:, :1])
    with pytest.raises(ValueError, match="class indices"):
        compute_metrics(np.where(y_true == 1, 2, 0), probabilities)
    with pytest.raises(ValueError, match="no predictions"):
        compute_metrics(np.array([], dtype=int), np.zeros((0, 2)))


def test_predict_directory_reads_the_split_in_batches(colour_model, tmp_path):
    split = make_split(tmp_path / "test", SPLIT)
    (split / "mask" / "notes.txt").write_text("not an image, and not an image extension either")
    files, y_true, probabilities = predict_directory(colour_model, split, batch_size=3)

    expected_files = [split / "mask" / name for name, _ in SPLIT["mask"]]
    assert sorted(files[:5]) == sorted(expected_files)  # subfolders and upper-case suffixes included
    assert files[5:] == [split / "no-mask" / name for name, _ in SPLIT["no-mask"]]
    assert y_true.tolist() == [0] * 5 + [1] * 3
    assert probabilities.shape == (8, 2) and probabilities.dtype == np.float32
    colours = {split / cls / name: rgb for cls, entries in SPLIT.items() for name, rgb in entries}
    np.testing.assert_allclose(probabilities[:, 1], [p_no_mask(colours[f]) for f in files], atol=1e-5)


def test_evaluate_model_writes_the_report(colour_model, tmp_path):
    split = make_split(tmp_path / "test", SPLIT)
    metrics = evaluate_model(colour_model, split, tmp_path / "reports", history=HISTORY, name="colour",
                             phase_boundary=2, batch_size=4)

    assert metrics["confusion_matrix"] == [[4, 1], [0, 3]]
    assert metrics["accuracy"] == pytest.approx(7 / 8)
    assert metrics["balanced_accuracy"] == pytest.approx((4 / 5 + 3 / 3) / 2)
    assert metrics["no_mask_recall"] == pytest.approx(1.0)
    assert metrics["roc_auc"] == pytest.approx(1.0)  # the purple crop (0.73) still ranks below every blue one
    [mistake] = metrics["misclassified"]
    assert mistake["file"] == str(split / "mask" / "purple.png") and mistake["true"] == "mask"
    assert mistake["probabilities"]["no-mask"] == pytest.approx(p_no_mask((120, 40, 170)), abs=1e-5)

    reports = tmp_path / "reports"
    names = ["colour_metrics.json", "colour_confusion.png", "colour_curves.png", "colour_misclassified.png"]
    assert sorted(p.name for p in reports.iterdir()) == sorted(names)  # and no temporary files left
    assert metrics["paths"] == {kind: str(reports / f"colour_{kind}.{'json' if kind == 'metrics' else 'png'}")
                                for kind in ("confusion", "misclassified", "curves", "metrics")}
    assert json.loads((reports / "colour_metrics.json").read_text()) == json.loads(json.dumps(metrics))
    for name in names[1:]:
        with Image.open(reports / name) as image:
            assert image.format == "PNG" and min(image.size) > 100


def test_evaluate_model_on_a_perfect_one_class_split(colour_model, tmp_path):
    """Only mask crops, all right, no history: no curves file, a worded misclassified image, AUC undefined."""
    split = make_split(tmp_path / "test", {"mask": SPLIT["mask"][:3]})
    metrics = evaluate_model(colour_model, split, tmp_path / "reports", name="clean")

    assert metrics["accuracy"] == 1.0 and metrics["misclassified"] == []
    assert metrics["roc_auc"] is None and metrics["no_mask_recall"] is None
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "clean_confusion.png", "clean_metrics.json", "clean_misclassified.png"]
    figure = plot_misclassified([split / "mask" / "red_0.png"], np.array([0]), np.array([[0.9, 0.1]]))
    assert "No misclassified crops" in figure.texts[0].get_text()


def test_evaluate_model_stops_on_an_unreadable_crop_and_writes_nothing(colour_model, tmp_path):
    split = make_split(tmp_path / "test", SPLIT)
    (split / "no-mask" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ImageError, match="broken.png"):
        evaluate_model(colour_model, split, tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_missing_or_empty_split_is_a_clear_error(colour_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="split folder not found"):
        predict_directory(colour_model, tmp_path / "absent")
    (tmp_path / "empty" / "mask").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images found"):
        predict_directory(colour_model, tmp_path / "empty")


def test_plot_history_draws_both_panels_and_the_phase_boundary(tmp_path):
    figure = plot_history(HISTORY, tmp_path / "curves.png", phase_boundary=2)
    assert isinstance(figure, Figure) and (tmp_path / "curves.png").is_file()
    loss, accuracy = figure.axes
    assert (loss.get_title(), accuracy.get_title()) == ("loss", "accuracy")
    assert [line.get_label() for line in loss.get_lines()] == ["train", "validation", "fine-tuning starts"]
    assert loss.get_lines()[1].get_ydata().tolist() == HISTORY["val_loss"]
    assert loss.get_lines()[2].get_xdata()[0] == 2.5  # between the last phase-1 epoch and the first of phase 2

    assert len(plot_history({"loss": [1.0, 0.5]}).axes) == 1  # no accuracy recorded, no accuracy panel
    # Phase 2 stopped before its first epoch: nothing to mark, but no error either.
    assert len(plot_history(HISTORY, phase_boundary=4).axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="phase_boundary"):
        plot_history(HISTORY, phase_boundary=5)
    with pytest.raises(ValueError, match="'loss'"):
        plot_history({"accuracy": [0.5]})


def test_plot_confusion_labels_rows_as_true(tmp_path):
    figure = plot_confusion([[4, 1], [0, 3]], ["mask", "no-mask"], tmp_path / "confusion.png")
    ax = figure.axes[0]
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("true", "predicted")
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert texts[(0, 1)] == "1\n20.0%"  # true mask, predicted no-mask: 1 of the 5 mask crops
    assert texts[(1, 1)] == "3\n100.0%"


def test_plot_misclassified_shows_at_most_max_images(tmp_path):
    split = make_split(tmp_path / "test", SPLIT)
    files = [split / "mask" / name for name, _ in SPLIT["mask"]]
    y_true = np.zeros(5, dtype=int)
    probabilities = np.array([[0.4, 0.6], [0.1, 0.9], [0.3, 0.7], [0.8, 0.2], [0.45, 0.55]])
    figure = plot_misclassified(files, y_true, probabilities, max_images=3)
    shown = [ax for ax in figure.axes if ax.images]
    assert len(shown) == 3
    # Most confident mistakes first: 0.9, then 0.7, then 0.6.
    assert [ax.get_title().splitlines()[0] for ax in shown] == ["red_1.png", "red_2.png", "red_0.png"]
    assert shown[0].get_title().splitlines()[1:] == ["true: mask", "P(mask)=0.10  P(no-mask)=0.90"]


def test_plot_images_takes_pil_images_and_float_arrays(tmp_path):
    photo = Image.new("RGB", (600, 400), (10, 200, 30))
    augmented = np.full((8, 8, 3), 300.0)  # augmentation can push values past 255
    augmented[..., 2] = -5.0
    figure = plot_images([photo, augmented, photo], ["original", "augmented", "again"], columns=2,
                         path=tmp_path / "grid.png")
    assert (tmp_path / "grid.png").is_file() and photo.size == (600, 400)  # the caller's image is untouched
    shown = [ax for ax in figure.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["original", "augmented", "again"]
    assert len(figure.axes) == 4  # 2 columns x 2 rows, the spare cell blank
    assert shown[1].images[0].get_array()[0, 0].tolist() == [255, 255, 0]  # clipped to 0-255
    with pytest.raises(ValueError, match="one title per image"):
        plot_images([photo], [])


def test_format_report_puts_no_mask_recall_on_its_own_line():
    metrics = compute_metrics(*hand_made_predictions())
    lines = format_report(metrics).splitlines()
    [recall_line] = [line for line in lines if line.startswith("no-mask recall")]
    assert "0.7500" in recall_line
    assert any(line.startswith("accuracy") and "0.7000" in line for line in lines)
    assert any(line.split() == ["mask", "4", "2"] for line in lines)


def test_comparison_table_has_one_row_per_model():
    first = compute_metrics(*hand_made_predictions())
    one_class = compute_metrics(np.zeros(2, dtype=int), np.array([[0.9, 0.1], [0.2, 0.8]]))
    table = comparison_table({"scratch": first, "vgg16": one_class})
    assert isinstance(table, pd.DataFrame)
    assert table.index.tolist() == ["scratch", "vgg16"]
    assert table.loc["scratch", "no-mask recall"] == pytest.approx(0.75)
    assert table.loc["scratch", "ROC AUC"] == pytest.approx(0.875)
    assert np.isnan(table.loc["vgg16", "ROC AUC"])
    assert table.loc["vgg16", "images"] == 2
    with pytest.raises(ValueError):
        comparison_table({})
