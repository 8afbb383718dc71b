"""Each person followed across frames: faces tracked by a maintained library, labelled from all their frames.

The tracking itself is Roboflow's `trackers` package (ByteTrack by default; SORT, OC-SORT, C-BIoU
and BoT-SORT from the same package can be chosen), picked by measurement in bench/track_bench.py.
This module only keeps the book on top of it: a `Person` per track, numbered from 1 once it has
been seen on `min_frames` frames (shorter tracks are flickers of the face detector), with the P(no-
mask) of every frame on which its face was classified. A person's label is the mean of those
against the model's decision threshold, so it does not flicker from frame to frame, and a face
already known is classified again only every `classify_every` frames (bench/track_bench.py measures
how often is enough). A person's track ends when the library drops it (no matching face for
`lost_seconds`).

Times come from the stream's clock, so that a dropped frame is a longer step for the Kalman
filters, not a jump they cannot follow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from facemask import DEFAULT_THRESHOLD
from facemask.detection import Detection, draw_detections
from facemask.metrics import face_label

TRACKERS = ("bytetrack", "sort", "ocsort", "cbiou", "botsort")
DEFAULT_TRACKER = "bytetrack"
DEFAULT_LOST_SECONDS = 2.0  # chosen on bench/track_bench.py clip0 (0.5, 1, 2, 3 s tried)
DEFAULT_MIN_FRAMES = 3
# Faces from this share of the face detector's threshold continue a track (never start one): chosen on
# bench/track_bench.py's clip0 (a quarter and a half tried, against faint faces left out).
FAINT_SHARE = 0.5
DEFAULT_CLASSIFY_EVERY = 5


def make_library_tracker(name: str, fps: float, lost_seconds: float, start_score: float = 0.0):
    """The library's tracker, by name; its lost-track buffer counts frames of 30 fps (the library's unit).

    A face scoring `start_score` or more may start a track and is matched first; fainter faces only
    continue tracks already there (ByteTrack's second round: a face turned away, half hidden, blurred)."""
    import trackers  # here: the package imports supervision and OpenCV, seconds that `--help` need not wait

    common = dict(lost_track_buffer=max(1, round(lost_seconds * 30)), frame_rate=fps)
    if name == "bytetrack":
        # The face detector's own threshold, not the library's 0.6, which left CenterFace's 0.4-0.6 faces unable
        # to start a track: 23 people counted of 30 instead of 27 on bench/track_bench.py's clip0.
        return trackers.ByteTrackTracker(**common, track_activation_threshold=start_score, minimum_consecutive_frames=1,
                                         high_conf_det_threshold=start_score)
    if name == "sort":
        return trackers.SORTTracker(**common, track_activation_threshold=start_score, minimum_consecutive_frames=1)
    if name == "ocsort":
        return trackers.OCSORTTracker(**common, minimum_consecutive_frames=1, high_conf_det_threshold=start_score)
    if name == "cbiou":  # boxes widened before matching: made for small objects that move irregularly
        return trackers.CBIoUTracker(**common, track_activation_threshold=start_score, minimum_consecutive_frames=1,
                                     high_conf_det_threshold=start_score)
    if name == "botsort":  # without camera motion compensation: a watching camera stands still
        return trackers.BoTSORTTracker(**common, enable_cmc=False, track_activation_threshold=start_score,
                                       minimum_consecutive_frames=1, high_conf_det_threshold=start_score)
    raise ValueError(f"unknown tracker {name!r} (one of {', '.join(TRACKERS)})")


class LibraryTracks:
    """The `trackers` package behind two calls: `update` (which track each face is on) and `alive`."""

    def __init__(self, name: str = DEFAULT_TRACKER, fps: float = 15.0, lost_seconds: float = DEFAULT_LOST_SECONDS,
                 start_score: float = 0.0):
        import supervision as sv

        self._sv = sv
        self._tracker = make_library_tracker(name, fps, lost_seconds, start_score)

    def update(self, boxes: np.ndarray, scores: np.ndarray, timestamp: float) -> list[tuple[int, int]]:
        """(track id, index of the face in `boxes`) for every face on a confirmed track."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        detections = self._sv.Detections(xyxy=boxes, confidence=np.asarray(scores, dtype=np.float32),
                                         class_id=np.zeros(len(boxes), dtype=int))
        result = self._tracker.update(detections, timestamp=timestamp)
        matched = []
        for box, track_id in zip(result.xyxy, result.tracker_id, strict=True):
            if track_id < 0 or not len(boxes):
                continue
            # The library returns the faces it was given, maybe reordered: find each one's index.
            matched.append((int(track_id), int(np.abs(boxes - box).sum(axis=1).argmin())))
        return matched

    def alive(self) -> set[int]:
        return {int(i) for i in self._tracker.tracked_objects.tracker_id}


@dataclass
class Person:
    """One track: when it was seen (wall clock, time.time(), and the stream's clock) and how it was classified."""

    track: int
    first_seen: float
    first_pts: float | None
    last_seen: float = 0.0
    last_pts: float | None = None
    frames: int = 0
    number: int = 0  # from 1, given once the track is long enough to be a person; 0 until then
    p_no_mask_sum: float = 0.0
    classified: int = 0
    last_classified: int = -(10**9)  # the frame counter when its face was last classified
    box: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0))

    @property
    def p_no_mask(self) -> float:
        return self.p_no_mask_sum / self.classified if self.classified else math.nan

    def label(self, threshold: float) -> str:
        return face_label(self.p_no_mask, threshold)


class PersonTracker:
    """Persons from the faces of each frame: `update` then classify the faces `due`, `ended` gives those gone."""

    def __init__(self, tracks: LibraryTracks, threshold: float = DEFAULT_THRESHOLD,
                 min_frames: int = DEFAULT_MIN_FRAMES, classify_every: int = DEFAULT_CLASSIFY_EVERY):
        self.tracks = tracks
        self.threshold = threshold
        self.min_frames = min_frames
        self.classify_every = classify_every
        self.people: dict[int, Person] = {}  # by track id: the tracks alive now
        self.numbered = 0  # persons numbered so far
        self.frame_count = 0

    def update(self, boxes: Sequence[Sequence[float]], scores: Sequence[float], timestamp: float,
               wall: float, pts: float | None) -> list[tuple[Person, int]]:
        """Track the faces of one frame; (person, index of its face in `boxes`) for each face on a track."""
        self.frame_count += 1
        seen = []
        for track_id, index in self.tracks.update(np.asarray(boxes, dtype=np.float32), np.asarray(scores), timestamp):
            person = self.people.get(track_id)
            if person is None:
                person = self.people[track_id] = Person(track_id, first_seen=wall, first_pts=pts)
            person.last_seen, person.last_pts = wall, pts
            person.frames += 1
            person.box = tuple(float(v) for v in boxes[index])
            if not person.number and person.frames >= self.min_frames:
                self.numbered += 1
                person.number = self.numbered
            seen.append((person, index))
        return seen

    def reset(self, tracks: LibraryTracks) -> None:
        """A new connection: a new tracker (the stream's clock starts again); the numbering goes on."""
        self.tracks = tracks
        self.people.clear()

    def due(self, person: Person) -> bool:
        """Whether this person's face is to be classified on the current frame."""
        return not person.classified or self.frame_count - person.last_classified >= self.classify_every

    def classified(self, person: Person, p_no_mask: float) -> None:
        person.p_no_mask_sum += p_no_mask
        person.classified += 1
        person.last_classified = self.frame_count

    def ended(self) -> list[Person]:
        """Persons whose track the library has dropped since the last call (flickers left out)."""
        alive = self.tracks.alive()
        gone = [track for track in self.people if track not in alive]
        return [p for p in (self.people.pop(track) for track in gone) if self.counted(p)]

    def end_all(self) -> list[Person]:
        """Every open track ended now (the watch stops, or the stream was lost)."""
        people = [p for p in self.people.values() if self.counted(p)]
        self.people.clear()
        return people

    def counted(self, person: Person) -> bool:
        return bool(person.number) and person.classified > 0

    def present(self) -> list[Person]:
        """The persons on screen now (numbered, classified)."""
        return [p for p in self.people.values() if self.counted(p)]


def track_frame(people: PersonTracker, detector, image, timestamp: float, wall: float, pts: float | None,
                max_side: int | None = None, min_score: float | None = None,
                ) -> tuple[list[tuple[Person, int]], list[Person]]:
    """One frame through a FaceMaskDetector (or the app's SerialDetector) and the tracker: faces found on a copy
    at most `max_side` large from the score `min_score` (the faint ones only continue tracks), tracked, the due
    ones classified in one batch. The (person, face index) pairs on this frame, and the persons whose visit
    has ended."""
    faces = detector.find_faces(image, max_side, min_score=min_score)
    seen = people.update([box for box, _ in faces], [score for _, score in faces], timestamp=timestamp, wall=wall,
                         pts=pts)
    due = [(person, index) for person, index in seen if people.due(person)]
    if due:
        for (person, _), found in zip(due, detector.classify(image, [faces[i] for _, i in due]), strict=True):
            people.classified(person, found.p_no_mask)
    return seen, people.ended()


def draw_people(image, people: PersonTracker, seen: Sequence[Person]):
    """The frame with a box on each person's face, numbered by person, labelled from their whole visit so far."""
    shown = [p for p in seen if people.counted(p)]
    detections = [Detection(tuple(round(v) for v in p.box), 1.0, 1 - p.p_no_mask, p.p_no_mask,
                            p.label(people.threshold)) for p in shown]
    return draw_detections(image, detections, numbers=[p.number for p in shown])
