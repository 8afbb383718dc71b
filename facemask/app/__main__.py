"""The web front-end: a Gradio app where a webcam snapshot, a photo or a video comes back boxed.

    facemask app --model models/compact.keras [--host 127.0.0.1] [--port 7860] [--share]
                           [--max-upload-mb 50] [--max-video-seconds 60] [--max-video-fps 30]
                           [--max-video-frames 1800] [--max-frame-pixels 8294400] [--queue-size 32]
                           [--max-live-seconds 60] [--margin M]

The page is facemask.app.ui: Photo, Video and Live tabs sharing one FaceMaskDetector. `--model` is a
.keras file or its .onnx or .tflite export; the .onnx training wrote beside a .keras file is served in
its place (facemask.classifier.load_served), by the Photo, Video and Live tabs alike. Faces are cropped
with the model's own margin (the one its training crops were cut with) unless `--margin` says otherwise.

It serves on 127.0.0.1 unless --host or --share says otherwise, and works offline.

The command keeps what it stores in a cache folder of its own (facemask.app.server), swept of files over
an hour old every half hour and removed at exit, and holds a bounded number of bytes for requests in
flight (facemask.app.uploads.RequestGuard); a request that makes Gradio fail is one log line. Ctrl+C or
SIGTERM (facemask.cli) is its normal stop: a video in progress ends at its next frame, the server closes
and the cache goes.
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import argparse
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from facemask import MAX_MARGIN
from facemask.app.server import one_line_errors, private_cache
from facemask.app.ui import CACHE_CLEANUP, DEFAULT_VIDEO_LIMITS, AppLimits, build_app, launch, serve_until_stopped
from facemask.app.uploads import CacheSweeper
from facemask.cli import ArgumentParser, add_threshold_options, fail, number_in, run_and_exit
from facemask.detection import FaceMaskDetector
from facemask.detectors import DEFAULT_DETECTOR, FACE_DETECTORS, make_face_detector


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="facemask app", description=__doc__.split("\n\n")[0])
    video = DEFAULT_VIDEO_LIMITS
    parser.add_argument("--model", type=Path, required=True, metavar="FILE",
                        help="a saved classifier: .keras, or its .onnx/.tflite export")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1: this machine only)")
    parser.add_argument("--port", type=number_in(int, 0, 65535), default=7860,
                        help="port; 0: the first free port from 7860")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs internet)")
    parser.add_argument("--max-upload-mb", type=number_in(float, 0, above=True), default=50,
                        help="largest photo or video, uploaded or sent as a data URL")
    parser.add_argument("--max-video-seconds", type=number_in(float, 0, above=True), default=video.max_seconds,
                        help="longest video")
    parser.add_argument("--max-video-fps", type=number_in(float, 0, above=True), default=video.max_fps,
                        help="frames per second processed; faster videos are sampled")
    parser.add_argument("--max-video-frames", type=number_in(int, 1), default=video.max_frames,
                        help="most frames processed in one video, after sampling")
    parser.add_argument("--max-frame-pixels", type=number_in(int, 1), default=video.max_frame_pixels,
                        help="videos with larger frames are refused (the default is 4K UHD, 3840x2160)")
    parser.add_argument("--queue-size", type=number_in(int, 1), default=AppLimits.queue_size,
                        help="requests waiting their turn; more are told the queue is full")
    parser.add_argument("--max-live-seconds", type=number_in(int, 1), default=AppLimits.live_seconds,
                        help="how long one live webcam stream runs")
    parser.add_argument("--detector", choices=list(FACE_DETECTORS), default=DEFAULT_DETECTOR, help="face detector")
    parser.add_argument("--margin", type=number_in(float, 0, MAX_MARGIN), default=None,
                        help=f"crop margin around a face, a fraction of its size, 0 to {MAX_MARGIN:g} "
                             "(default: the model's own, the one its training crops were cut with)")
    add_threshold_options(parser)
    return parser.parse_args(argv)


def limits_from(args: argparse.Namespace) -> AppLimits:
    video = replace(DEFAULT_VIDEO_LIMITS, max_seconds=args.max_video_seconds, max_fps=args.max_video_fps,
                    max_frames=args.max_video_frames, max_frame_pixels=args.max_frame_pixels)
    return AppLimits(max_upload_mb=args.max_upload_mb, video=video, queue_size=args.queue_size,
                     live_seconds=args.max_live_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limits = limits_from(args)
    try:
        detector = FaceMaskDetector.from_path(args.model, face_detector=make_face_detector(args.detector),
                                              face_threshold=args.face_threshold, no_mask_threshold=args.threshold,
                                              margin=args.margin)  # None: the model's own
    except (OSError, ValueError) as error:
        return fail(error)
    # Uploads, results and their folders in Gradio's cache: readable by this user only.
    os.umask(0o077)
    with one_line_errors(), private_cache() as cache, CacheSweeper(cache, *CACHE_CLEANUP):
        return serve(detector, limits, args)


def serve(detector: FaceMaskDetector, limits: AppLimits, args: argparse.Namespace) -> int:
    """Build the app, serve it until Ctrl+C or SIGTERM (facemask.cli) and close it; the exit status."""
    demo = build_app(detector, limits)
    try:
        local_url, share_url = launch(demo, args.host, args.port, args.share, args.max_upload_mb)
    except OSError as error:  # e.g. the port is taken
        return fail(f"cannot serve on {args.host}:{args.port}: {error}")
    print(f"Serving the face mask detector on {local_url}" + (f" and {share_url}" if share_url else ""), flush=True)
    print("Press Ctrl+C to stop.", flush=True)
    serve_until_stopped(demo)  # returns on Ctrl+C or SIGTERM (facemask.cli), the server closed
    return 0


if __name__ == "__main__":
    run_and_exit(main)
