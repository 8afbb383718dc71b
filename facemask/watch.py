"""Watch a camera: each person followed across frames, labelled mask or no-mask, and counted.

    python -m facemask.watch SOURCE --model models/compact.keras [--events events.jsonl]
                             [--counts counts.csv] [--interval 60] [--record DIR] [--segment-seconds 300]

SOURCE is a camera (/dev/video0), a stream URL (rtsp://, http(s)://, udp://, srt://) or a video
file, read by ffmpeg (facemask.streams). Faces are found on every frame the machine keeps up with,
followed by a tracker (facemask.tracking) and classified every few frames; a person's label is
the mean P(no-mask) of their face against the model's decision threshold.

- `--events FILE.jsonl`: one JSON object per person when they leave the view (and for everyone
  still in view when the watch stops or the stream is lost): id, label, first_seen and last_seen
  (ISO 8601, and first_pts/last_pts on the stream's own clock, in seconds), frames, p_no_mask.
- `--counts FILE.csv`: a row every --interval seconds, `start,end,people,mask,no_mask,frames,dropped`.
  A person is counted in the interval in which their visit ends, with the label of the whole
  visit, so the counts add up to the events exactly.
- `--record DIR`: the annotated stream (boxes, person numbers) as H.264 MP4 segments.
- stderr: a status line (people now, totals, frames/s, dropped), and each outage once.

Live sources run in real time: a frame that processing is too slow for is dropped (counted),
never queued. A file is read as fast as possible, every frame, and its times are the watch's
start plus the file's own clock (so a recording gives the counts its hours would have given);
--realtime reads it at its own rate instead, dropping like a camera. A stream that ends, stalls
or fails is reopened with backoff; only a source that cannot be opened at start is an error.
SIGINT/SIGTERM write the open visits and the last interval, close the files and exit (130/143).
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import argparse
import json
import math
import statistics
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from facemask import DEFAULT_MARGIN, MAX_MARGIN
from facemask.cli import STOP, ArgumentParser, deferred_stop, fail, number_in, raise_if_stopped, run
from facemask.detectors import DEFAULT_DETECTOR, FACE_DETECTORS
from facemask.records import LineFile, SegmentRecorder, check_output_file, iso_time
from facemask.streams import Frame, FrameReader, Source, StreamError, StreamLimits, check_source, parse_source
from facemask.tracking import (
    DEFAULT_CLASSIFY_EVERY,
    DEFAULT_LOST_SECONDS,
    DEFAULT_MIN_FRAMES,
    DEFAULT_TRACKER,
    FAINT_SHARE,
    TRACKERS,
    LibraryTracks,
    Person,
    PersonTracker,
    draw_people,
    track_frame,
)
from facemask.video import VIDEO_MAX_SIDE

COUNTS_HEADER = "start,end,people,mask,no_mask,frames,dropped"
POLL = 0.1  # seconds of waiting for a frame between the stall check and the counts' clock
MAX_BACKOFF = 30.0  # seconds between reopening attempts at most
MAX_STEP = 5.0  # seconds between two frames' timestamps beyond which the stream's clock is not believed
LATENCIES_KEPT = 2000  # the last frames' latencies, for the median in the summary (memory stays flat)


class Interval:
    """The counts of the current --interval: people whose visit ended in it, frames, dropped frames."""

    def __init__(self, start: float):
        self.start = start
        self.people = self.mask = self.no_mask = self.frames = self.dropped = 0

    def row(self, end: float) -> str:
        return (f"{iso_time(self.start)},{iso_time(end)},{self.people},{self.mask},{self.no_mask},"
                f"{self.frames},{self.dropped}")


class Watch:
    """The loop: frames in, persons tracked, events, counts, segments and status out."""

    def __init__(self, args, source: Source, detector, threshold: float, start_score: float = 0.0,
                 faint_score: float = 0.0):
        self.args, self.source, self.detector = args, source, detector
        self.start_score, self.faint_score = start_score, faint_score
        self.is_file = source.kind == "file"
        self.realtime = not self.is_file or args.realtime
        self.limits = StreamLimits(args.max_fps, args.max_frame_side, args.max_frame_pixels)
        self.people = PersonTracker(self.new_tracks(15.0), threshold, args.min_frames, args.classify_every)
        self.events: LineFile | None = None
        self.counts: LineFile | None = None
        self.fps = 15.0
        self.recorder = None
        self.reader: FrameReader | None = None
        self.started_wall = time.time()
        self.interval = Interval(self.started_wall)
        self.totals = {"people": 0, "mask": 0, "no-mask": 0, "frames": 0, "dropped": 0, "outages": 0}
        self.latencies: deque[float] = deque(maxlen=LATENCIES_KEPT)
        self.first_pts: float | None = None
        self.last_pts: float | None = None
        self.track_clock = 0.0
        self.last_index = -1
        self.clock_now = self.started_wall
        self.last_status = self.started = time.monotonic()
        self.status_frames = 0

    def open_outputs(self) -> None:
        self.events = LineFile(self.args.events) if self.args.events else None
        self.counts = LineFile(self.args.counts, COUNTS_HEADER) if self.args.counts else None

    # -- the stream ----------------------------------------------------------------------------

    def new_tracks(self, fps: float) -> LibraryTracks:
        return LibraryTracks(self.args.tracker, fps, self.args.lost_seconds, self.start_score)

    def connect(self) -> FrameReader:
        """One connection to the source, its header read; StreamError if it cannot be opened."""
        reader = FrameReader(self.source, self.limits, keep_all=not self.realtime,
                             realtime_file=self.is_file and self.realtime,
                             rtsp_transport=None if self.args.rtsp_transport == "auto" else self.args.rtsp_transport)
        info = reader.open(self.args.open_timeout)  # a stop while it waits: Interrupted, the connection closed
        try:
            with deferred_stop():  # the new tracker and recorder in place together
                fps = self.fps = min(info.fps, self.args.max_fps)
                self.people.reset(self.new_tracks(fps))
                if self.args.record and (self.recorder is None or self.recorder.fps != fps):
                    if self.recorder is not None:
                        self.recorder.close()
                    self.recorder = SegmentRecorder(self.args.record, self.args.segment_seconds, fps)
                self.last_index = -1
                self.last_pts = None
        except BaseException:
            reader.close()
            raise
        return reader

    def reconnect(self, reason: str) -> FrameReader:
        """After an outage (said once): reopen with backoff until it works; a stop raises `Interrupted`."""
        self.totals["outages"] += 1
        print(f"warning: {reason}; reopening (outage {self.totals['outages']})", file=sys.stderr, flush=True)
        lost = time.monotonic()
        backoff = 1.0
        while True:
            self.tick()
            STOP.wait(backoff)  # the signal raises Interrupted in this wait (the main thread)
            raise_if_stopped()
            try:
                reader = self.connect()
            except StreamError:
                backoff = min(2 * backoff, MAX_BACKOFF)
                continue
            print(f"{self.source.name}: stream back after {time.monotonic() - lost:.1f} s", file=sys.stderr,
                  flush=True)
            return reader

    # -- the loop ------------------------------------------------------------------------------

    def run(self, reader: FrameReader) -> int:
        """Watch until the file ends (the exit status) or a stop (facemask.cli's `Interrupted`, raised where
        the loop waits, or after the frame being processed: a frame's events and counts go out together)."""
        self.reader = reader
        last_frame = time.monotonic()
        try:
            while True:
                raise_if_stopped()
                try:
                    frame = self.reader.next_frame(POLL)
                except StreamError as error:
                    if self.is_file:
                        message = str(error)
                        return 0 if message.endswith("the stream ended") else fail(message)
                    self.lose_stream(str(error))
                    last_frame = time.monotonic()
                    continue
                if frame is None:
                    if time.monotonic() - last_frame > self.args.stall_seconds:
                        self.lose_stream(f"{self.source.name}: no frame for {self.args.stall_seconds:g} s")
                        last_frame = time.monotonic()
                    self.tick()
                    continue
                last_frame = time.monotonic()
                with deferred_stop():
                    self.process(frame)
                    self.tick()
        finally:
            self.finish()

    def lose_stream(self, reason: str) -> None:
        with deferred_stop():
            self.reader.close()
            self.take_dropped()
            self.reader = None
            for person in self.people.end_all():
                self.visit_ended(person, "stream lost")
        self.reader = self.reconnect(reason)

    def take_dropped(self) -> None:
        dropped, self.reader.dropped = self.reader.dropped, 0
        self.interval.dropped += dropped
        self.totals["dropped"] += dropped

    def frame_time(self, frame: Frame) -> float:
        """The frame's wall-clock time: its arrival live; for a file read at full speed, the watch's start
        plus the file's own clock."""
        if self.realtime or frame.pts is None:
            return time.time() - (time.monotonic() - frame.arrived)
        if self.first_pts is None:
            self.first_pts = frame.pts
        return self.started_wall + max(0.0, frame.pts - self.first_pts)

    def track_time(self, frame: Frame) -> float:
        """The tracker's clock: the stream's own steps, but never backwards nor a leap (a looped file, a camera
        restarting its clock), which the library would take as frames to skip or a long absence."""
        step = 1.0 / self.fps
        if frame.pts is not None and self.last_pts is not None and 0 < frame.pts - self.last_pts <= MAX_STEP:
            step = frame.pts - self.last_pts
        self.last_pts = frame.pts
        self.track_clock += step
        return self.track_clock

    def process(self, frame: Frame) -> None:
        wall = self.frame_time(frame)
        self.clock_now = max(self.clock_now, wall)
        image = Image.fromarray(frame.rgb)
        seen, ended = track_frame(self.people, self.detector, image, self.track_time(frame), wall, frame.pts,
                                  self.args.max_side, self.faint_score)
        for person in ended:
            self.visit_ended(person, "left")
        self.latencies.append(time.monotonic() - frame.arrived)
        self.interval.frames += 1
        self.totals["frames"] += 1
        self.status_frames += 1
        self.take_dropped()
        if self.recorder is not None:
            repeat = min(frame.index - self.last_index, math.ceil(2 * self.recorder.fps)) if self.last_index >= 0 else 1
            self.recorder.add(np.asarray(draw_people(image, self.people, [p for p, _ in seen])), wall, repeat)
        self.last_index = frame.index

    def visit_ended(self, person: Person, why: str) -> None:
        label = person.label(self.people.threshold)
        if self.events is not None:
            self.events.write(json.dumps({
                "id": person.number, "label": label, "first_seen": iso_time(person.first_seen),
                "last_seen": iso_time(person.last_seen), "first_pts": person.first_pts, "last_pts": person.last_pts,
                "frames": person.frames, "classified": person.classified,
                "p_no_mask": round(person.p_no_mask, 4), "ended": why, "source": self.source.name}))
        self.interval.people += 1
        self.totals["people"] += 1
        self.totals[label] += 1
        if label == "mask":
            self.interval.mask += 1
        else:
            self.interval.no_mask += 1

    def tick(self) -> None:
        """Close the intervals that are over, and show the status when it is time."""
        now = time.time() if self.realtime else self.clock_now
        while now >= self.interval.start + self.args.interval:
            with deferred_stop():  # a row written is an interval closed: never written twice
                end = self.interval.start + self.args.interval
                if self.counts is not None:
                    self.counts.write(self.interval.row(end))
                self.interval = Interval(end)
        if time.monotonic() - self.last_status >= self.args.status_seconds:
            self.status()

    def status(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self.last_status
        rate = self.status_frames / elapsed if elapsed > 0 else 0.0
        totals = self.totals
        shown = totals["frames"] + totals["dropped"]
        share = 100 * totals["dropped"] / shown if shown else 0.0
        line = (f"{self.source.name}: {len(self.people.present())} people now, {totals['people']} seen "
                f"({totals['mask']} mask, {totals['no-mask']} no-mask), {rate:.1f} frames/s, "
                f"{totals['dropped']} dropped ({share:.1f}%), {totals['outages']} outages")
        if final:
            median = 1000 * statistics.median(self.latencies) if self.latencies else math.nan
            overall = totals["frames"] / max(time.monotonic() - self.started, 1e-9)
            line += f"; {totals['frames']} frames, {overall:.1f} frames/s, median latency {median:.0f} ms"
        print(line, file=sys.stderr, flush=True)
        self.last_status, self.status_frames = time.monotonic(), 0

    def finish(self) -> None:
        """Open visits and the last interval written, every file closed (a stop, the end, or a failure);
        a stop arriving meanwhile waits for the end of it."""
        with deferred_stop():
            if self.reader is not None:
                self.reader.close()
                self.take_dropped()
            for person in self.people.end_all():
                self.visit_ended(person, "stopped" if STOP.is_set() else "stream ended")
            end = time.time() if self.realtime else self.clock_now
            self.tick()
            if self.counts is not None and (self.interval.frames or self.interval.people or self.interval.dropped
                                            or end > self.interval.start):
                self.counts.write(self.interval.row(max(end, self.interval.start)))
            if self.recorder is not None:
                self.recorder.close()
            for log in (self.events, self.counts):
                if log is not None:
                    log.close()
            self.status(final=True)


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="python -m facemask.watch", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", metavar="SOURCE", help="a camera (/dev/video0), a stream URL "
                        "(rtsp://, http(s)://, udp://, srt://) or a video file")
    parser.add_argument("--model", type=Path, required=True, metavar="FILE",
                        help="a saved classifier: .keras, or its .onnx/.tflite export (facemask.classifier)")
    parser.add_argument("--events", type=Path, metavar="FILE", help="JSON lines, one per person (appended)")
    parser.add_argument("--counts", type=Path, metavar="FILE", help="CSV, one row per interval (appended)")
    parser.add_argument("--interval", type=number_in(float, 0, above=True), default=60.0, metavar="SECONDS",
                        help="the counts' interval")
    parser.add_argument("--record", type=Path, metavar="DIR", help="annotated MP4 segments into this folder")
    parser.add_argument("--segment-seconds", type=number_in(float, 1), default=300.0, metavar="SECONDS",
                        help="length of a recorded segment")
    parser.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=False,
                        help="read a video file at its own rate, dropping frames like a camera, instead of every "
                             "frame as fast as possible (live sources are always real time)")
    parser.add_argument("--threshold", type=number_in(float, 0, 1), default=None,
                        help="P(no-mask) from which a person is no-mask (default: the model's, else 0.5)")
    parser.add_argument("--face-threshold", type=number_in(float, 0, 1), default=None,
                        help="face detector confidence from which a face starts a track (default: the detector's own)")
    parser.add_argument("--track-threshold", type=number_in(float, 0, 1), default=None,
                        help="fainter faces, down to this confidence, only continue a track already started "
                             "(default: half of --face-threshold)")
    parser.add_argument("--detector", choices=list(FACE_DETECTORS), default=DEFAULT_DETECTOR, help="face detector")
    parser.add_argument("--margin", type=number_in(float, 0, MAX_MARGIN), default=DEFAULT_MARGIN,
                        help="crop margin around a face, a fraction of its size")
    parser.add_argument("--min-size", type=number_in(int, 0), default=0, metavar="N",
                        help="ignore faces whose shorter side is under N px")
    parser.add_argument("--max-side", type=number_in(int, 1), default=VIDEO_MAX_SIDE,
                        help="look for faces on a copy of each frame at most this large")
    parser.add_argument("--tracker", choices=TRACKERS, default=DEFAULT_TRACKER, help="the tracking algorithm")
    parser.add_argument("--lost-seconds", type=number_in(float, 0, above=True), default=DEFAULT_LOST_SECONDS,
                        metavar="SECONDS", help="a visit ends when its face has not been seen for this long")
    parser.add_argument("--min-frames", type=number_in(int, 1), default=DEFAULT_MIN_FRAMES, metavar="N",
                        help="a track is a person once seen on N frames (shorter ones are detector flickers)")
    parser.add_argument("--classify-every", type=number_in(int, 1), default=DEFAULT_CLASSIFY_EVERY, metavar="N",
                        help="classify a known face again every N frames")
    parser.add_argument("--stall-seconds", type=number_in(float, 0, above=True), default=10.0, metavar="SECONDS",
                        help="a live stream without a frame for this long is reopened")
    parser.add_argument("--open-timeout", type=number_in(float, 0, above=True), default=15.0, metavar="SECONDS",
                        help="how long opening the source may take")
    parser.add_argument("--status-seconds", type=number_in(float, 0, above=True), default=10.0, metavar="SECONDS",
                        help="seconds between status lines on stderr")
    parser.add_argument("--rtsp-transport", choices=("auto", "tcp", "udp"), default="auto",
                        help="RTSP over TCP or UDP (auto: ffmpeg tries UDP, then TCP)")
    parser.add_argument("--max-fps", type=number_in(float, 0, above=True), default=30.0,
                        help="higher frame rates are sampled down to this one")
    parser.add_argument("--max-frame-side", type=number_in(int, 16), default=1280, metavar="PX",
                        help="larger frames are scaled down to this long side before they are read")
    parser.add_argument("--max-frame-pixels", type=number_in(int, 1), default=3840 * 2160, metavar="N",
                        help="a source announcing larger frames is refused")
    args = parser.parse_args(argv)
    try:
        args.source = parse_source(args.source)
    except ValueError as error:
        parser.error(str(error))
    return args


def check_outputs(args) -> str | None:
    for path, header in ((args.events, None), (args.counts, COUNTS_HEADER)):
        problem = path is not None and check_output_file(path, header)
        if problem:
            return problem
    if args.record is not None:
        try:
            args.record.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return f"{args.record}: cannot create the folder ({error.strerror})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = check_source(args.source) or check_outputs(args)
    if not problem and not args.model.is_file():
        problem = f"model file not found: {args.model}"
    if problem:
        return fail(problem)
    return watch_source(args)


def watch_source(args) -> int:
    """Open the source, load the model, watch; the exit status (a stop raises facemask.cli's `Interrupted`)."""
    from facemask.sidecar import decision_threshold  # the sidecar's no_mask_threshold, else 0.5

    try:
        threshold = args.threshold if args.threshold is not None else decision_threshold(args.model)
    except ValueError as error:
        return fail(error)
    # The source is opened before the model's seconds of loading: a bad URL or device says so at once.
    from facemask.detection import FaceMaskDetector
    from facemask.detectors import make_face_detector

    face_detector = make_face_detector(args.detector)
    start = args.face_threshold if args.face_threshold is not None else getattr(face_detector, "threshold", 0.0)
    faint = min(start, args.track_threshold if args.track_threshold is not None else FAINT_SHARE * start)
    watch = Watch(args, args.source, None, threshold, start_score=start, faint_score=faint)
    try:
        reader = watch.connect()
    except StreamError as error:
        return fail(error)
    try:
        watch.detector = FaceMaskDetector.from_path(args.model, face_detector=face_detector, margin=args.margin,
                                                    min_size=args.min_size, face_threshold=start,
                                                    no_mask_threshold=threshold, max_side=args.max_side)
        warm_up(watch.detector)
        watch.open_outputs()
    except (OSError, ValueError) as error:
        reader.close()
        return fail(error)
    except KeyboardInterrupt:  # stopped while the model loads: nothing written yet
        reader.close()
        raise
    reader.dropped = 0  # frames the model's loading let go by are no loss of the watch
    watch.started_wall = watch.interval.start = watch.clock_now = time.time()
    watch.last_status = watch.started = time.monotonic()
    try:
        return watch.run(reader)
    except OSError as error:  # an output file that can no longer be written (a full disk)
        return fail(error)


def warm_up(detector) -> None:
    """One detection and classification on a blank frame: the first calls trace graphs (a second, not a lag)."""
    image = Image.new("RGB", (64, 64), (128, 128, 128))
    detector.find_faces(image)
    detector.classify(image, [((8, 8, 56, 56), 1.0)])


if __name__ == "__main__":
    run(main)
