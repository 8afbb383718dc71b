"""The watch of a camera: frames in, each person followed across frames, labelled and counted; events,
counts, recorded segments and a status line out (`facemask watch` is its command).

Faces are found on every frame the machine keeps up with, followed by a tracker (facemask.tracking) and
classified every few frames; a person's label is the mean P(no-mask) of their face against the model's
decision threshold. A person is counted in the interval in which their visit ends, with the label of the
whole visit, so the counts add up to the events exactly.

Live sources run in real time: a frame that processing is too slow for is dropped (counted), never
queued. A file is read as fast as possible, every frame, and its times are the watch's start plus the
file's own clock; with `realtime` it is read at its own rate, dropping like a camera. A stream that ends,
stalls or fails is reopened with backoff. A stop (facemask.cli) writes the open visits and the last
interval and closes the files.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections import deque

import numpy as np
from PIL import Image

from facemask.cli import STOP, deferred_stop, fail, raise_if_stopped
from facemask.records import LineFile, SegmentRecorder, iso_time
from facemask.streams import Frame, FrameReader, Source, StreamError, StreamLimits
from facemask.tracking import LibraryTracks, Person, PersonTracker, draw_people, track_frame

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
                             rtsp_transport=None if self.args.rtsp_transport == "auto" else self.args.rtsp_transport,
                             max_lag=self.args.max_lag)
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


def warm_up(detector, size: tuple[int, int] = (64, 64), max_side: int | None = None) -> None:
    """One detection and classification on a blank frame of the stream's size: the first calls trace graphs
    and size ONNX Runtime's buffers, done here rather than on the first frames of the stream (warmed up on a
    64 px frame, the first two 640x480 frames took 80-100 ms where the rest take 35: frames dropped at
    every start)."""
    image = Image.new("RGB", size, (128, 128, 128))
    detector.find_faces(image, max_side)
    detector.classify(image, [((8, 8, 56, 56), 1.0)])
