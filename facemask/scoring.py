"""Scoring face detections against annotated boxes: IoU, matching, precision-recall, VOC average precision.

Pure numbers, no model: `facemask.evaluate_photos` feeds it what a detector found on annotated photos.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from facemask import CLASS_NAMES

IOU_THRESHOLD = 0.5
SMALL_FACE = 20  # px: faces under this on their shorter side are the ones general detectors miss most


class Found(Protocol):
    """A detection as facemask.detect.Detection gives it: box, detector score, class probabilities, label."""

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


def _share(part: int, whole: int) -> float | None:
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
        "recall50": _share(matched, faces),
        "precision50": _share(matched, detections),
        "recall30": _share(loose, faces),
        "recall50_small": _share(small_matched, small_faces),
        "recall50_large": _share(matched - small_matched, faces - small_faces),
        "accuracy_matched": _share(correct, matched),
        "ap50": ap,
        "map50": float(np.mean(defined)) if defined else None,
        "curves": curves,
    }
