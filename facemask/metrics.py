"""The classifier's numbers on labelled face crops: pure numbers, no model and no files.

- accuracy and balanced accuracy (the mean of the two recalls, honest under class imbalance),
- precision / recall / F1 / support per class, and ROC AUC with P(no-mask) as the score,
- the confusion matrix, rows true [mask, no-mask] and columns predicted, as the seed reports it,
- recall of `no-mask`: the share of unmasked faces the model catches, the number that matters
  for safety, so it is reported on its own line.

Undefined numbers (recall of a class absent from the split, precision of a class never predicted,
AUC when the split holds one class) are None, never a made-up 0; `roc_auc_note` then says why.
facemask.evaluate scores crop folders with them, facemask.evaluate_photos the annotated boxes of
photos, and facemask.plots draws the confusion matrix and the mistakes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from facemask import CLASS_NAMES

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


def misclassified_indices(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Indices of the wrong predictions, the most confident mistakes first."""
    probabilities = np.asarray(probabilities)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(y_true))
    return wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")]
