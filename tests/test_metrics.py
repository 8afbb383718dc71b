"""metrics, the photos part: IoU, matching and VOC average precision on hand-made cases worked out here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from facemask.metrics import TrueFace, average_precision, iou, match_faces, ranked_hits, score_photos


@dataclass
class Found:
    box: tuple[float, float, float, float]
    score: float
    p_mask: float
    label: str = ""

    @property
    def p_no_mask(self) -> float:
        return 1 - self.p_mask

    def __post_init__(self):
        self.label = self.label or ("mask" if self.p_mask >= 0.5 else "no-mask")


MASKED, BARE = TrueFace((0, 0, 10, 10), "mask", "face_with_mask"), TrueFace((20, 0, 30, 10), "no-mask", "face_no_mask")


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0  # empty boxes overlap nothing


def test_perfect_detections_score_one_everywhere():
    truth = {"a.jpg": [MASKED, BARE], "b.jpg": [TrueFace((5, 5, 25, 25), "mask", "face_with_mask")]}
    found = {"a.jpg": [Found(MASKED.box, 0.99, 0.9), Found(BARE.box, 0.98, 0.2)],
             "b.jpg": [Found((5, 5, 25, 25), 0.97, 0.8)]}
    scores = score_photos(found, truth)
    assert scores["ap50"] == {"mask": 1.0, "no-mask": 1.0} and scores["map50"] == 1.0
    assert scores["recall50"] == scores["precision50"] == scores["accuracy_matched"] == 1.0
    assert scores["faces"] == scores["matched"] == 3


def test_a_known_precision_recall_curve():
    # Ranked hit, miss, hit, miss with 3 faces: precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3.
    # The envelope is 1 up to recall 1/3 and 2/3 up to 2/3, nothing after: AP = 1/3 + 2/3 * 1/3 = 5/9.
    assert average_precision(np.array([True, False, True, False]), 3) == pytest.approx(5 / 9)
    # The VOC textbook case: hits T T F F T of 4 faces -> 0.25 * 1 + 0.25 * 1 + 0.25 * 0.6 = 0.65.
    assert average_precision(np.array([True, True, False, False, True]), 4) == pytest.approx(0.65)
    assert average_precision(np.array([], dtype=bool), 2) == 0.0  # nothing found
    assert average_precision(np.array([False]), 0) is None  # no face of the class: undefined, not 0


def test_ranking_duplicates_and_wrong_class_are_false_positives():
    truth = {"a.jpg": [MASKED, BARE]}
    found = {"a.jpg": [
        Found(MASKED.box, 0.9, 0.9),  # mask score 0.81: a hit for mask
        Found((0, 0, 10, 11), 0.8, 0.9),  # the same face again, 0.72: a duplicate, a miss
        Found(BARE.box, 0.99, 0.7),  # a bare face called mask, 0.693 for mask: a miss for mask
        Found((50, 50, 60, 60), 0.5, 0.6),  # nothing there, 0.3: a miss
    ]}
    scores, hits, positives = ranked_hits(found, truth, "mask")
    np.testing.assert_allclose(scores, [0.81, 0.72, 0.693, 0.3])
    assert hits.tolist() == [True, False, False, False] and positives == 1
    # For no-mask the bare face ranks first (0.99 * 0.3 = 0.297 beats 0.09, 0.08, 0.2): a hit at rank 1.
    assert ranked_hits(found, truth, "no-mask")[1].tolist() == [True, False, False, False]
    scores = score_photos(found, truth)
    assert scores["ap50"] == {"mask": 1.0, "no-mask": 1.0}
    # Class-agnostic, greedy by detector score: both faces found, 2 of 4 detections right.
    assert scores["recall50"] == 1.0 and scores["precision50"] == 0.5
    assert scores["accuracy_matched"] == 0.5  # the bare face was called mask


def test_matching_is_greedy_by_score_and_one_to_one():
    truth = [TrueFace((0, 0, 10, 10), "mask", ""), TrueFace((6, 0, 16, 10), "mask", "")]
    found = [Found((3, 0, 13, 10), 0.6, 0.9), Found((5, 0, 15, 10), 0.9, 0.9)]
    # The 0.9 detection goes first and takes the face it overlaps most (IoU 0.82, the second);
    # the 0.6 one then has the first face left, at IoU 0.54.
    assert match_faces(found, truth) == [(1, 1), (0, 0)]
    assert match_faces(found, truth, min_iou=0.6) == [(1, 1)]


def test_threshold_filters_recall_and_precision_not_ap():
    truth = {"a.jpg": [MASKED, BARE]}
    found = {"a.jpg": [Found(MASKED.box, 0.95, 0.9), Found(BARE.box, 0.4, 0.1)]}
    scores = score_photos(found, truth, threshold=0.5)
    assert scores["recall50"] == 0.5 and scores["precision50"] == 1.0 and scores["detections"] == 1
    assert scores["ap50"] == {"mask": 1.0, "no-mask": 1.0}


def test_small_and_large_faces_are_counted_apart():
    small = TrueFace((0, 0, 12, 12), "mask", "face_with_mask")
    large = TrueFace((40, 40, 80, 80), "no-mask", "face_no_mask")
    scores = score_photos({"a.jpg": [Found(large.box, 0.99, 0.1)]}, {"a.jpg": [small, large]})
    assert scores["recall50_small"] == 0.0 and scores["recall50_large"] == 1.0
    assert scores["ap50"]["mask"] == 0.0 and scores["map50"] == 0.5
