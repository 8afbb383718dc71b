"""Watch a camera: each person followed across frames, labelled mask or no-mask, and counted.

    facemask watch SOURCE --model models/compact.keras [--events events.jsonl]
                             [--counts counts.csv] [--interval 60] [--record DIR] [--segment-seconds 300]

SOURCE is a camera (/dev/video0), a stream URL (rtsp://, http(s)://, udp://, srt://) or a video
file, read by ffmpeg (facemask.streams). Faces are found on every frame the machine keeps up with,
followed by a tracker (facemask.tracking) and classified every few frames; a person's label is
the mean P(no-mask) of their face against the model's decision threshold. Faces are cropped with
the model's own margin (its training crops') unless --margin says otherwise.

- `--events FILE.jsonl`: one JSON object per person when they leave the view (and for everyone
  still in view when the watch stops or the stream is lost): id, label, first_seen and last_seen
  (ISO 8601, and first_pts/last_pts on the stream's own clock, in seconds), frames, p_no_mask.
- `--counts FILE.csv`: a row every --interval seconds, `start,end,people,mask,no_mask,frames,dropped`.
  A person is counted in the interval in which their visit ends, with the label of the whole
  visit, so the counts add up to the events exactly.
- `--record DIR`: the annotated stream (boxes, person numbers) as H.264 MP4 segments.
- stderr: a status line (people now, totals, frames/s, dropped), and each outage once.

Live sources run in real time: a frame that processing is too slow for is dropped (counted); at
most --max-lag seconds of frames wait their turn, so a burst of frames or a short stall is absorbed
without lagging behind the camera. A file is read as fast as possible, every frame, and its times
are the watch's start plus the file's own clock (so a recording gives the counts its hours would
have given); --realtime reads it at its own rate instead, dropping like a camera. A stream that
ends, stalls or fails is reopened with backoff; only a source that cannot be opened at start is an
error. SIGINT/SIGTERM write the open visits and the last interval, close the files and exit
(130/143).
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from facemask import MAX_MARGIN
from facemask.cli import ArgumentParser, fail, number_in, run_and_exit
from facemask.detection import FaceMaskDetector
from facemask.detectors import DEFAULT_DETECTOR, FACE_DETECTORS, make_face_detector
from facemask.records import check_output_file
from facemask.sidecar import decision_threshold
from facemask.streams import DEFAULT_MAX_LAG, StreamError, check_source, parse_source
from facemask.tracking import (
    DEFAULT_CLASSIFY_EVERY,
    DEFAULT_LOST_SECONDS,
    DEFAULT_MIN_FRAMES,
    DEFAULT_TRACKER,
    FAINT_SHARE,
    TRACKERS,
)
from facemask.watcher import COUNTS_HEADER, Watch, warm_up

# Faces looked for on the whole of a 640x480 frame, not on the 320 px copy the video path uses: on
# the clips of bench/track_bench.py the settings were chosen on, CenterFace found 88% of the faces on
# the whole frame and 77% on the copy (IDF1 0.86 against 0.77), and 640 px still keeps up with 15
# frames/s on 2 idle cores.
WATCH_MAX_SIDE = 640


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="facemask watch", description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--margin", type=number_in(float, 0, MAX_MARGIN), default=None,
                        help=f"crop margin around a face, a fraction of its size, 0 to {MAX_MARGIN:g} (default: the "
                             "model's own, the one its training crops were cut with)")
    parser.add_argument("--min-size", type=number_in(int, 0), default=0, metavar="N",
                        help="ignore faces whose shorter side is under N px")
    parser.add_argument("--max-side", type=number_in(int, 1), default=WATCH_MAX_SIDE,
                        help="look for faces on a copy of each frame at most this large (320: about 2.5x less CPU "
                             "per frame, but more people missed)")
    parser.add_argument("--tracker", choices=TRACKERS, default=DEFAULT_TRACKER, help="the tracking algorithm")
    parser.add_argument("--lost-seconds", type=number_in(float, 0, above=True), default=DEFAULT_LOST_SECONDS,
                        metavar="SECONDS", help="a visit ends when its face has not been seen for this long")
    parser.add_argument("--min-frames", type=number_in(int, 1), default=DEFAULT_MIN_FRAMES, metavar="N",
                        help="a track is a person once seen on N frames (shorter ones are detector flickers)")
    parser.add_argument("--classify-every", type=number_in(int, 1), default=DEFAULT_CLASSIFY_EVERY, metavar="N",
                        help="classify a known face again every N frames")
    parser.add_argument("--max-lag", type=number_in(float, 0), default=DEFAULT_MAX_LAG, metavar="SECONDS",
                        help="live: frames that have waited this long, or are this much older than the newest, "
                             "are dropped; the backlog absorbs bursts of frames and short stalls (0: only the newest)")
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
    try:  # the sidecar's no_mask_threshold, else 0.5
        threshold = args.threshold if args.threshold is not None else decision_threshold(args.model)
    except ValueError as error:
        return fail(error)
    # The source is opened before the model's seconds of loading: a bad URL or device says so at once.
    face_detector = make_face_detector(args.detector)
    start = args.face_threshold if args.face_threshold is not None else getattr(face_detector, "threshold", 0.0)
    faint = min(start, args.track_threshold if args.track_threshold is not None else FAINT_SHARE * start)
    watch = Watch(args, args.source, None, threshold, start_score=start, faint_score=faint)
    try:
        reader = watch.connect()
    except StreamError as error:
        return fail(error)
    try:
        watch.detector = FaceMaskDetector.from_path(args.model, face_detector=face_detector, min_size=args.min_size,
                                                    face_threshold=start, no_mask_threshold=threshold,
                                                    max_side=args.max_side, margin=args.margin)  # None: the model's
        width, height = reader.info.size
        shrink = min(1.0, args.max_frame_side / max(width, height, 1))  # as ffmpeg scales the frames
        warm_up(watch.detector, (max(1, round(width * shrink)), max(1, round(height * shrink))), args.max_side)
        watch.open_outputs()
    except (OSError, ValueError) as error:
        reader.close()
        return fail(error)
    except KeyboardInterrupt:  # stopped while the model loads: nothing written yet
        reader.close()
        raise
    reader.catch_up()  # frames the model's loading let go by are no loss of the watch
    watch.started_wall = watch.interval.start = watch.clock_now = time.time()
    watch.last_status = watch.started = time.monotonic()
    try:
        return watch.run(reader)
    except OSError as error:  # an output file that can no longer be written (a full disk)
        return fail(error)


if __name__ == "__main__":
    run_and_exit(main)
