"""The evaluation's reports as text and tables: what `evaluate`, training and the notebook print.

`format_report` is the crop report of facemask.evaluation.evaluate_model (mask and no-mask recall on
their own lines, the numbers by face size when known), `format_photos_report` the photo report of
evaluate_photos, `comparison_table` the headline numbers of several models side by side.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from facemask.metrics import format_by_size, number_text


def format_report(metrics: Mapping) -> str:
    """A short text report at the decision threshold; mask and no-mask recall have their own lines, and
    the numbers by face size follow when known."""
    class_names = metrics["class_names"]
    title = f"{metrics['model']}: " if "model" in metrics else ""
    auc = number_text(metrics["roc_auc"]) if metrics["roc_auc"] is not None else f"n/a ({metrics['roc_auc_note']})"
    lines = [
        f"{title}{metrics['count']} images, decision threshold on P(no-mask) {metrics['threshold']:.4g}",
        f"accuracy           {number_text(metrics['accuracy'])}",
        f"balanced accuracy  {number_text(metrics['balanced_accuracy'])}",
        f"ROC AUC            {auc}",
        f"no-mask recall     {number_text(metrics['no_mask_recall'])}   (share of unmasked faces caught)",
        f"mask recall        {number_text(metrics['per_class']['mask']['recall'])}   "
        "(share of masked faces left alone)",
        "",
        f"{'':10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for name in class_names:
        scores = metrics["per_class"][name]
        lines.append(f"{name:10}{number_text(scores['precision']):>10}{number_text(scores['recall']):>10}"
                     f"{number_text(scores['f1']):>10}{scores['support']:>9}")
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


def format_photos_report(report: dict) -> str:
    """The numbers a reader wants first, one line each."""
    ap = report["ap50"]
    lines = [
        f"{report['photos']} photos, {report['faces']} annotated faces ({report['selection']}); "
        f"{report['incorrect_rule']}",
        f"detector {report['detector']}, classifier {report['model']}, crop margin {report['margin']}",
        f"mAP@0.5            {number_text(report['map50'], 3)}   (AP mask {number_text(ap['mask'], 3)}, "
        f"no-mask {number_text(ap['no-mask'], 3)}; VOC all-point)",
        f"face recall@0.5    {number_text(report['recall50'], 3)}   ({report['matched']}/{report['faces']}; "
        f"faces under 20 px {number_text(report['recall50_small'], 3)}, 20 px and more "
        f"{number_text(report['recall50_large'], 3)}; at IoU 0.3 {number_text(report['recall30'], 3)})",
        f"face precision@0.5 {number_text(report['precision50'], 3)}   ({report['detections']} faces found with "
        f"detector score >= {report['face_threshold']})",
        f"accuracy on matched faces {number_text(report['accuracy_matched'], 3)}   (no-mask when P(no-mask) >= "
        f"{report['no_mask_threshold']:.4g})",
    ]
    boxes = report["true_boxes"]
    if boxes is not None:
        lines.append(f"classifier on the {boxes['count']} annotated boxes: "
                     f"accuracy {number_text(boxes['accuracy'], 3)}, "
                     f"mask recall {number_text(boxes['per_class']['mask']['recall'], 3)}, "
                     f"no-mask recall {number_text(boxes['no_mask_recall'], 3)}, "
                     f"balanced accuracy {number_text(boxes['balanced_accuracy'], 3)}")
        lines += format_by_size(boxes["by_size"])
    speed = number_text(report["photos_per_second"], 2)
    lines.append(f"speed              {speed} photos/s ({report['seconds']:.1f} s detecting and classifying)")
    if report["unreadable_photos"]:
        lines.append(f"skipped {len(report['unreadable_photos'])} unreadable photos")
    if report["boxes_outside_photo"]:
        lines.append(f"ignored {report['boxes_outside_photo']} annotated boxes with no area inside their photo")
    return "\n".join(lines)
