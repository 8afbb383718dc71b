"""Scoring arithmetic, pure numbers with no model and no files: the classifier on labelled face crops,
and face detection + classification on annotated photos.

The classifier on crops (`compute_metrics`, `by_size`):
- accuracy and balanced accuracy (the mean of the two recalls, honest under class imbalance),
- precision / recall / F1 / support per class, and ROC AUC with P(no-mask) as the score,
- the confusion matrix, rows true [mask, no-mask] and columns predicted, as the original project reports it,
- recall of `no-mask`: the share of unmasked faces the model catches, the number that matters
  for safety, so it is reported on its own line;
- the same numbers by face size (`by_size`: the shorter side of the annotated box, in the buckets of
  SIZE_BUCKETS), since small faces are read worst.

A face is called no-mask when its P(no-mask) is at least the decision threshold (0.5 unless the model's
sidecar holds the one chosen on its validation split, `serving_threshold`), mask otherwise:
`predicted_classes` is the one place that rule is written.

Undefined numbers (recall of a class absent from the split, precision of a class never predicted,
AUC when the split holds one class) are None, never a made-up 0; `roc_auc_note` then says why.

Detections on annotated photos (`score_photos`, what facemask.evaluation feeds it):
- Face recall and precision at IoU 0.5 are class-agnostic: detections are taken greedily, highest
  detector score first, each by the best still-unmatched annotated face it overlaps at IoU >= 0.5.
- Average precision per class follows PASCAL VOC (2010 on, "all-point interpolation"): every
  detection is a candidate for each class, scored detector score x P(class); ranked by that score, a
  detection is a true positive when its best-overlapping face of that class reaches IoU 0.5 and has
  not been claimed by a higher-ranked detection, else a false positive (a duplicate, or a face of the
  other class). AP is the area under the precision envelope (the running maximum from the right).
  mAP@0.5 is the mean over the two classes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from facemask import CLASS_NAMES, DEFAULT_THRESHOLD

POSITIVE_CLASS = "no-mask"  # the class whose detection matters: the positive class of the ROC curve
# Face sizes reported apart, by the shorter side of the annotated box in px: (name, smallest, largest + 1).
SIZE_BUCKETS = (("under 16", 0, 16), ("16-31", 16, 32), ("32-63", 32, 64), ("64 and more", 64, None))


def _number(value: float) -> float | None:
    """A plain float for JSON, or None for an undefined (NaN) value."""
    value = float(value)
    return None if math.isnan(value) else value


def predicted_classes(probabilities: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                      class_names: Sequence[str] = CLASS_NAMES) -> np.ndarray:
    """The class index of every row: no-mask where P(no-mask) >= threshold, the other class elsewhere.

    The project's one decision rule: a face's label (`face_label`) and the scores all come from here.
    """
    positive = list(class_names).index(POSITIVE_CLASS)
    return np.where(np.asarray(probabilities)[:, positive] >= threshold, positive, 1 - positive)


def face_label(p_no_mask: float, threshold: float) -> str:
    """The label of one face whose P(no-mask) is `p_no_mask`, by predicted_classes' rule."""
    return CLASS_NAMES[int(predicted_classes(np.array([[1 - p_no_mask, p_no_mask]]), threshold)[0])]


def compute_metrics(y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str] = CLASS_NAMES,
                    threshold: float = 0.5) -> dict:
    """Accuracy, balanced accuracy, per-class scores, ROC AUC and the confusion matrix.

    `y_true` holds class indices (0 = mask, 1 = no-mask); `probabilities` one row per example in
    the same class order. A face is predicted no-mask when P(no-mask) >= `threshold`.
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

    # Here, not at the top: predict labels faces with this module and answers --help without scikit-learn.
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    if not 0 <= threshold <= 1:
        raise ValueError(f"the threshold is a probability, from 0 to 1, not {threshold}")
    labels = list(range(len(class_names)))
    y_pred = predicted_classes(probabilities, threshold, class_names)
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
        "threshold": float(threshold),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy),
        "no_mask_recall": per_class[POSITIVE_CLASS]["recall"],
        "roc_auc": roc_auc,
        "roc_auc_note": roc_auc_note,
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def misclassified_indices(y_true: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Indices of the wrong predictions at `threshold`, the most confident mistakes first."""
    probabilities = np.asarray(probabilities)
    predicted = predicted_classes(probabilities, threshold)
    wrong = np.flatnonzero(predicted != np.asarray(y_true))
    return wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")]


def size_bucket(side: float) -> str:
    """The SIZE_BUCKETS name of a face whose annotated box's shorter side is `side` px."""
    for name, low, high in SIZE_BUCKETS:
        if side >= low and (high is None or side < high):
            return name
    raise ValueError(f"a face size is a length in px, not {side}")


def by_size(y_true: np.ndarray, probabilities: np.ndarray, sides: Sequence[float], threshold: float = 0.5,
            class_names: Sequence[str] = CLASS_NAMES) -> dict[str, dict]:
    """Per SIZE_BUCKETS bucket (all four, in order): faces, accuracy and each class's recall and count.

    `sides` is each face's shorter side in px. A number without faces to count is None.
    """
    y_true, sides = np.asarray(y_true), np.asarray(sides, dtype=np.float64)
    if sides.shape != y_true.shape:
        raise ValueError(f"{sides.size} face sizes for {y_true.size} faces")
    correct = predicted_classes(probabilities, threshold, class_names) == y_true
    buckets = np.array([size_bucket(side) for side in sides])
    report = {}
    for name, _, _ in SIZE_BUCKETS:
        inside = buckets == name
        entry = {"count": int(inside.sum()), "accuracy": _share(correct[inside])}
        for index, class_name in enumerate(class_names):
            of_class = inside & (y_true == index)
            entry[f"{class_name} count"] = int(of_class.sum())
            entry[f"{class_name} recall"] = _share(correct[of_class])
        report[name] = entry
    return report


def format_by_size(by_size_report: Mapping[str, Mapping] | None, note: str = "") -> list[str]:
    """The by-size table's lines (faces, accuracy, each class's recall per bucket), or the note saying why not."""
    if by_size_report is None:
        return [note]
    lines = ["by face size (shorter side of the annotated box, px)",
             f"{'size':13}{'faces':>7}{'accuracy':>10}{'mask recall':>13}{'no-mask recall':>16}"]
    for name, _, _ in SIZE_BUCKETS:
        row = by_size_report[name]
        lines.append(f"{name:13}{row['count']:>7}{number_text(row['accuracy']):>10}"
                     f"{number_text(row['mask recall']):>13}{number_text(row['no-mask recall']):>16}")
    return lines


def number_text(value: float | None, digits: int = 4) -> str:
    """A score for a text report: `digits` decimals, or n/a when undefined (None)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def _share(hits: np.ndarray) -> float | None:
    return float(hits.mean()) if hits.size else None


def choose_threshold(y_true: np.ndarray, p_no_mask: np.ndarray, class_names: Sequence[str] = CLASS_NAMES) -> float:
    """The threshold on P(no-mask) with the best balanced accuracy on these (validation) faces; ties go to
    the one nearest 0.5, and 0.5 itself when it is among the best.

    The candidates are 0.5 and the midpoints between consecutive distinct probabilities, so the chosen
    threshold never sits on a validation face's own probability.
    """
    y_true, p_no_mask = np.asarray(y_true), np.asarray(p_no_mask, dtype=np.float64)
    positive = list(class_names).index(POSITIVE_CLASS)
    is_positive = y_true == positive
    if is_positive.all() or not is_positive.any():
        return 0.5  # one class only: balanced accuracy cannot weigh the two errors against each other
    values = np.unique(p_no_mask)
    candidates = np.concatenate([[0.5], (values[1:] + values[:-1]) / 2])
    # Balanced accuracy of "no-mask when p >= t" for every candidate t, from sorted probabilities.
    caught = np.array([(p_no_mask[is_positive] >= t).mean() for t in candidates])
    spared = np.array([(p_no_mask[~is_positive] < t).mean() for t in candidates])
    score = (caught + spared) / 2
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])  # argmin: the first of equals


def serving_threshold(y_true: np.ndarray, p_no_mask: np.ndarray, class_names: Sequence[str] = CLASS_NAMES) -> float:
    """The threshold a trained model is served with: `choose_threshold`'s, pulled halfway back to 0.5.

    A validation split of about 140 faces, 28 of them unmasked, places the best balanced accuracy's cut
    noisily: on the five folds of bench/crossval.py (validation parts, each rule fitted on half the photos
    and scored on the other half) the halfway cut kept the same balanced accuracy and lost 2.4 points less
    accuracy and 5 points less mask recall than the full one (0.5 itself keeps the most masks and misses
    the most unmasked faces).
    """
    return (choose_threshold(y_true, p_no_mask, class_names) + 0.5) / 2


# ---------------------------------------------------------------- detections on annotated photos

IOU_THRESHOLD = 0.5
SMALL_FACE = 20  # px: faces under this on their shorter side are the ones general detectors miss most


class Found(Protocol):
    """A detection as facemask.detection.Detection gives it: box, detector score, class probabilities, label."""

    box: Sequence[float]
    score: float
    p_mask: float
    p_no_mask: float
    label: str


@dataclass(frozen=True)
class TrueFace:
    """An annotated face: box (x0, y0, x1, y1), label ("mask" / "no-mask") and the CSV's class name."""

    box: tuple[float, float, float, float]
    label: str
    classname: str


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1); 0 when either is empty."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def match_faces(found: Sequence[Found], truth: Sequence[TrueFace],
                min_iou: float = IOU_THRESHOLD) -> list[tuple[int, int]]:
    """(face index, detection index) pairs, class-agnostic, one detection per face at most.

    Highest score first, each detection takes the unmatched face it overlaps most, if at IoU >= min_iou.
    """
    pairs, taken = [], set()
    for d in sorted(range(len(found)), key=lambda i: -found[i].score):
        overlaps = [(iou(found[d].box, face.box), f) for f, face in enumerate(truth) if f not in taken]
        best_iou, best = max(overlaps, default=(0.0, -1))
        if best_iou >= min_iou:
            taken.add(best)
            pairs.append((best, d))
    return pairs


def probability_of(detection: Found, label: str) -> float:
    return detection.p_mask if label == "mask" else detection.p_no_mask


def ranked_hits(found: Mapping[str, Sequence[Found]], truth: Mapping[str, Sequence[TrueFace]], label: str,
                min_iou: float = IOU_THRESHOLD) -> tuple[np.ndarray, np.ndarray, int]:
    """For one class: (scores, hits) of every detection ranked by score x P(label), and the faces of that class."""
    scored = [(d.score * probability_of(d, label), name, d.box) for name, ds in found.items() for d in ds]
    scored.sort(key=lambda item: -item[0])
    positives = sum(face.label == label for faces in truth.values() for face in faces)
    claimed: set[tuple[str, int]] = set()
    hits = np.zeros(len(scored), dtype=bool)
    for rank, (_, name, box) in enumerate(scored):
        overlaps = [(iou(box, face.box), f) for f, face in enumerate(truth.get(name, ())) if face.label == label]
        best_iou, best = max(overlaps, default=(0.0, -1))
        if best_iou >= min_iou and (name, best) not in claimed:  # its face already claimed: a duplicate
            claimed.add((name, best))
            hits[rank] = True
    return np.array([s for s, _, _ in scored], dtype=np.float64), hits, positives


def precision_recall(hits: np.ndarray, positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each ranked detection (hits in rank order)."""
    true_positives = np.cumsum(hits, dtype=np.float64)
    recall = true_positives / positives if positives else np.zeros_like(true_positives)
    precision = true_positives / np.arange(1, len(hits) + 1)
    return recall, precision


def average_precision(hits: np.ndarray, positives: int) -> float | None:
    """VOC all-point interpolated AP of ranked hits; None when the class has no face to find."""
    if positives == 0:
        return None
    recall, precision = precision_recall(hits, positives)
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope: best precision at this recall or more
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def score_photos(found: Mapping[str, Sequence[Found]], truth: Mapping[str, Sequence[TrueFace]],
                 threshold: float = 0.0) -> dict:
    """The photo-level numbers: face recall/precision at IoU 0.5 (detections scoring >= threshold),
    accuracy of the labels on the matched faces, AP@0.5 per class (all detections) and mAP@0.5.

    Also `curves`: per class, the recall and precision arrays behind the AP, for the plot.
    """
    faces = sum(map(len, truth.values()))
    kept = {name: [d for d in found.get(name, ()) if d.score >= threshold] for name in truth}
    matched = correct = loose = small_faces = small_matched = 0
    for name, faces_here in truth.items():
        pairs = match_faces(kept[name], faces_here)
        matched += len(pairs)
        correct += sum(kept[name][d].label == faces_here[f].label for f, d in pairs)
        loose += len(match_faces(kept[name], faces_here, min_iou=0.3))
        small = {f for f, face in enumerate(faces_here)
                 if min(face.box[2] - face.box[0], face.box[3] - face.box[1]) < SMALL_FACE}
        small_faces += len(small)
        small_matched += sum(f in small for f, _ in pairs)
    detections = sum(map(len, kept.values()))
    ap, curves = {}, {}
    for label in CLASS_NAMES:
        _, hits, positives = ranked_hits(found, truth, label)
        ap[label] = average_precision(hits, positives)
        recall, precision = precision_recall(hits, positives)
        curves[label] = {"recall": recall, "precision": precision}
    defined = [value for value in ap.values() if value is not None]
    return {
        "faces": faces,
        "detections": detections,
        "matched": matched,
        "recall50": _ratio(matched, faces),
        "precision50": _ratio(matched, detections),
        "recall30": _ratio(loose, faces),
        "recall50_small": _ratio(small_matched, small_faces),
        "recall50_large": _ratio(matched - small_matched, faces - small_faces),
        "accuracy_matched": _ratio(correct, matched),
        "ap50": ap,
        "map50": float(np.mean(defined)) if defined else None,
        "curves": curves,
    }
