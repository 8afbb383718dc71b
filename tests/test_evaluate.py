"""evaluate: metrics checked against hand-computed values, the report files, the plots and tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import build_colour_model, colour_probabilities
from matplotlib.figure import Figure
from PIL import Image

from facemask.evaluation import evaluate_model, predict_directory
from facemask.images import ImageError
from facemask.metrics import (
    SIZE_BUCKETS,
    by_size,
    choose_threshold,
    compute_metrics,
    misclassified_indices,
    predicted_classes,
    serving_threshold,
)
from facemask.plots import plot_confusion, plot_history, plot_images, plot_misclassified
from facemask.reports import comparison_table, format_report
from facemask.splitting import MANIFEST_COLUMNS

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
             ("purple.png", (120, 40, 170)), ("red_3.PNG", (190, 20, 60))],
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
    # Training reads the images directly inside each class folder (facemask.data.split_files), so does this.
    (split / "mask" / "sub").mkdir()
    Image.new("RGB", (20, 18), (200, 40, 40)).save(split / "mask" / "sub" / "nested.png")
    files, y_true, probabilities = predict_directory(colour_model, split, batch_size=3)

    expected_files = [split / "mask" / name for name, _ in SPLIT["mask"]]
    assert sorted(files[:5]) == sorted(expected_files)  # upper-case suffixes included, subfolders not
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
    # Given the faces' sizes, each title says its own; at a threshold of 0.65 only 0.9 and 0.7 are mistakes.
    figure = plot_misclassified(files, y_true, probabilities, sizes=[12, 40, 20, 64, 9], threshold=0.65)
    shown = [ax for ax in figure.axes if ax.images]
    assert [ax.get_title().splitlines()[1] for ax in shown] == ["true: mask, face 40 px", "true: mask, face 20 px"]


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


# ---------------------------------------------------------------- thresholds and face sizes


def test_the_threshold_changes_labels_exactly_at_it():
    y_true, probabilities = hand_made_predictions()  # P(no-mask) of the no-mask rows: 0.9, 0.8, 0.6, 0.35
    at = compute_metrics(y_true, probabilities, threshold=0.35)
    above = compute_metrics(y_true, probabilities, threshold=np.nextafter(0.35, 1))
    assert at["threshold"] == 0.35 and at["no_mask_recall"] == 1.0  # P(no-mask) = 0.35 is no-mask at 0.35
    assert above["no_mask_recall"] == pytest.approx(3 / 4)
    # Mask rows at 0.55 and 0.7 are called no-mask at 0.35 and 0.5, 0.7 alone at 0.6, neither at 0.71.
    assert [compute_metrics(y_true, probabilities, threshold=t)["per_class"]["mask"]["recall"]
            for t in (0.35, 0.5, 0.6, 0.71)] == pytest.approx([4 / 6, 4 / 6, 5 / 6, 1.0])
    assert predicted_classes(probabilities, 0.55).tolist() == [0, 0, 0, 1, 1, 0, 1, 1, 1, 0]
    assert misclassified_indices(y_true, probabilities, 0.5).tolist() == [4, 9, 3]  # most confident first
    assert misclassified_indices(y_true, probabilities, 0.8).tolist() == [9, 8]
    with pytest.raises(ValueError, match="from 0 to 1"):
        compute_metrics(y_true, probabilities, threshold=1.5)


def test_the_threshold_is_chosen_for_the_best_balanced_accuracy_ties_to_half():
    # At 0.5: mask 2/3 right, no-mask 1/2; at 0.3 (between 0.2 and 0.4): 2/3 and 2/2, the best.
    assert choose_threshold(np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.6, 0.4, 0.9])) == pytest.approx(0.3)
    assert choose_threshold(np.array([0, 1]), np.array([0.2, 0.8])) == 0.5  # every cut in (0.2, 0.8] is perfect
    assert choose_threshold(np.array([0, 1]), np.array([0.6, 0.9])) == pytest.approx(0.75)  # never on a face's own p
    assert choose_threshold(np.array([0, 0]), np.array([0.6, 0.9])) == 0.5  # one class: nothing to balance


def test_the_served_threshold_is_pulled_halfway_back_to_half():
    assert serving_threshold(np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.6, 0.4, 0.9])) == pytest.approx(0.4)
    assert serving_threshold(np.array([0, 1]), np.array([0.2, 0.8])) == 0.5


def test_by_size_puts_each_face_in_its_bucket():
    sides = [8, 15, 16, 31, 32, 63, 64, 300]
    y_true = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    p = np.array([0.2, 0.3, 0.7, 0.9, 0.1, 0.8, 0.4, 0.6])  # wrong: 15 px (0.3), 16 px (0.7)
    report = by_size(y_true, np.column_stack([1 - p, p]), sides)
    assert list(report) == [name for name, _, _ in SIZE_BUCKETS] == ["under 16", "16-31", "32-63", "64 and more"]
    assert [report[name]["count"] for name in report] == [2, 2, 2, 2]
    assert report["under 16"] == {"count": 2, "accuracy": 0.5, "mask count": 1, "mask recall": 1.0,
                                  "no-mask count": 1, "no-mask recall": 0.0}
    assert report["16-31"]["accuracy"] == 0.5 and report["32-63"]["accuracy"] == 1.0
    assert by_size(y_true, np.column_stack([1 - p, p]), sides, threshold=0.25)["under 16"]["accuracy"] == 1.0
    assert by_size(np.array([0]), np.array([[0.9, 0.1]]), [70])["under 16"] == {
        "count": 0, "accuracy": None, "mask count": 0, "mask recall": None, "no-mask count": 0,
        "no-mask recall": None}


def write_manifest(path: Path, split_dir: Path, sizes: dict[str, tuple[int, int]], columns=None) -> Path:
    """A split.py manifest for the crops of `split_dir` (named by class/name), with the given face sizes."""
    columns = columns or MANIFEST_COLUMNS
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for name, (width, height) in sizes.items():
            label = name.split("/")[0]
            writer.writerow({"path": f"{split_dir.name}/{name}", "split": split_dir.name, "label": label,
                             "source": "photo.jpg", "csv_line": 2, "classname": "face", "xmin": 0, "ymin": 0,
                             "xmax": width, "ymax": height, "face_width": width, "face_height": height})
    return path


# Face sizes (width, height) of SPLIT's crops: one or two per bucket, the mistake (purple) a 20 px face.
SIZES = {"mask/red_0.png": (12, 14), "mask/red_1.png": (40, 16), "mask/red_2.png": (70, 64),
         "mask/purple.png": (20, 24), "mask/red_3.PNG": (33, 40), "no-mask/blue_0.png": (9, 30),
         "no-mask/blue_1.png": (100, 90), "no-mask/blue_2.png": (31, 31)}


def test_the_crops_command_reports_by_face_size_from_the_manifest(colour_model_file, tmp_path, capsys):
    from facemask.evaluate import main

    split = make_split(tmp_path / "data" / "test", SPLIT)
    write_manifest(tmp_path / "data" / "manifest.csv", split, SIZES)  # found beside the split folder
    assert main(["crops", "--model", str(colour_model_file), str(split), "--reports", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "r" / "colour_metrics.json").read_text())
    assert {name: entry["count"] for name, entry in metrics["by_size"].items()} == {
        "under 16": 2, "16-31": 3, "32-63": 1, "64 and more": 2}
    assert metrics["by_size"]["16-31"]["accuracy"] == pytest.approx(2 / 3)  # purple, 20 px, is the mistake
    assert metrics["by_size"]["16-31"]["mask recall"] == 0.5 and metrics["by_size"]["16-31"]["no-mask recall"] == 1
    [mistake] = metrics["misclassified"]
    assert mistake["face_size"] == 20 and mistake["file"].endswith("purple.png")
    assert "by face size (shorter side of the annotated box, px)" in printed
    assert any(line.split() == ["16-31", "3", "0.6667", "0.5000", "1.0000"] for line in printed.splitlines())
    assert "mask recall        0.8000" in printed and "decision threshold on P(no-mask) 0.5" in printed
    # The threshold moves every figure: at 0.75 the purple crop (P(no-mask) 0.73) is read right.
    assert main(["crops", "--model", str(colour_model_file), str(split), "--reports", str(tmp_path / "r2"),
                 "--threshold", "0.75"]) == 0
    metrics = json.loads((tmp_path / "r2" / "colour_metrics.json").read_text())
    assert metrics["threshold"] == 0.75 and metrics["by_size"]["16-31"]["accuracy"] == 1.0


def test_the_crops_command_says_when_face_sizes_are_unavailable(colour_model_file, tmp_path, capsys):
    from facemask.evaluate import main

    split = make_split(tmp_path / "data" / "test", SPLIT)
    run = ["crops", "--model", str(colour_model_file), str(split), "--reports", str(tmp_path / "r")]
    assert main(run) == 0  # no manifest: no guess from the crop's size (it includes a margin)
    assert "by face size: unavailable (no split.py manifest.csv" in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "colour_metrics.json").read_text())["by_size"] is None
    partial = dict(list(SIZES.items())[:-1])
    write_manifest(tmp_path / "data" / "manifest.csv", split, partial)
    assert main(run) == 0
    assert "unavailable (1 of the 8 crops are not in" in capsys.readouterr().out
    old = [c for c in MANIFEST_COLUMNS if not c.startswith("face_")]
    write_manifest(tmp_path / "data" / "manifest.csv", split, SIZES, columns=old)  # an older split.py's
    assert main(run) == 0
    assert "no rows with path, face_width, face_height columns" in capsys.readouterr().out
    # A manifest named on the command line must be usable.
    assert main([*run, "--manifest", str(tmp_path / "data" / "manifest.csv")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'data' / 'manifest.csv'}: not a split.py manifest")
    good = write_manifest(tmp_path / "elsewhere.csv", split, SIZES)
    good.replace(tmp_path / "data" / "named.csv")
    assert main([*run, "--manifest", str(tmp_path / "data" / "named.csv")]) == 0
    assert "under 16" in capsys.readouterr().out
