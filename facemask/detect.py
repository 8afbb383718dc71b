"""`facemask detect`: photos and videos in, faces boxed green (mask) or red (no mask) out.

    facemask detect --model models/compact.keras photo.jpg clip.mp4 --out out/

`--model` is a .keras file or its .onnx or .tflite export (facemask.classifier.load_served). Faces are
found, cropped and classified by facemask.detection.FaceMaskDetector: `--face-threshold` is the face
detector's confidence from which a face is kept (default: the detector's own), `--threshold` the
decision threshold on P(no-mask) and `--margin` the crop margin (default for both: the model's, kept
in its sidecar at training time).

Photos give `out/<stem>_annotated.<ext>` and `out/<stem>.json`; videos (see facemask.video) give
`out/<stem>_annotated.mp4`, without sound. Inputs sharing a stem get `<stem>-2`, `<stem>-3`...: no
output overwrites another.
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import argparse
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from facemask import MAX_MARGIN
from facemask.cli import ArgumentParser, add_threshold_options, fail, number_in, raise_if_stopped, run_and_exit
from facemask.detection import FaceMaskDetector, annotate_photo, annotate_video_file
from facemask.detectors import DEFAULT_DETECTOR, FACE_DETECTORS, make_face_detector
from facemask.images import ImageError
from facemask.video import VIDEO_EXTENSIONS, VIDEO_MAX_SIDE, VideoError


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def output_stems(inputs: Sequence[Path]) -> list[str]:
    """One output name per input, all different: a repeated stem gets -2, -3... so no result overwrites another.

    Photos write <stem>.json and <stem>_annotated.<ext>, videos <stem>_annotated.mp4; x.jpg and x.png,
    or a/x.jpg and b/x.jpg, would otherwise write the same x.json.
    """
    taken: set[str] = set()
    stems = []
    for path in inputs:
        stem, counter = path.stem, 1
        while stem.lower() in taken:  # lower: two names differing in case are one file on some disks
            counter += 1
            stem = f"{path.stem}-{counter}"
        taken.add(stem.lower())
        stems.append(stem)
    return stems


def check_out_dir(out: Path) -> str | None:
    """Why the output folder cannot be used or created, or None; checked before the model loads."""
    if out.exists():
        if not out.is_dir():
            return f"{out}: the output path exists and is not a folder"
        return None if os.access(out, os.W_OK | os.X_OK) else f"{out}: cannot write into the output folder"
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{out}: cannot create the output folder, {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{out}: cannot create the output folder (permission denied in {parent})"
    return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="facemask detect",
                            description="From a photo to faces boxed green (mask) or red (no mask).",
                            epilog="Videos are written without their sound track.")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="photos and/or videos")
    parser.add_argument("--model", type=Path, required=True, metavar="FILE",
                        help="a saved classifier: .keras, or its .onnx/.tflite export")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder")
    parser.add_argument("--margin", type=number_in(float, 0, MAX_MARGIN), default=None,
                        help=f"crop margin around a face, a fraction of its size, 0 to {MAX_MARGIN:g} "
                             "(default: the one the model was trained with, from its sidecar)")
    parser.add_argument("--min-size", type=number_in(int, 0), default=0, metavar="N",
                        help="ignore faces whose shorter side is under N px")
    parser.add_argument("--detector", choices=list(FACE_DETECTORS), default=DEFAULT_DETECTOR, help="face detector")
    add_threshold_options(parser)
    parser.add_argument("--max-side", type=number_in(int, 1), default=1024,
                        help="detect faces on a copy of a photo at most this big")
    parser.add_argument("--video-max-side", type=number_in(int, 1), default=VIDEO_MAX_SIDE,
                        help="the same for video frames (webcam faces are large; smaller is faster)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = check_out_dir(args.out)  # before the model's seconds of loading
    if problem:
        return fail(problem)
    try:
        detector = FaceMaskDetector.from_path(args.model, face_detector=make_face_detector(args.detector),
                                              margin=args.margin, min_size=args.min_size,
                                              face_threshold=args.face_threshold, no_mask_threshold=args.threshold,
                                              max_side=args.max_side)
    except (OSError, ValueError) as error:
        return fail(error)
    created = not args.out.exists()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return fail(f"{args.out}: cannot create the output folder ({error.strerror})")
    failures = 0
    try:
        for path, stem in zip(args.inputs, output_stems(args.inputs), strict=True):
            try:
                if is_video(path):
                    print(annotate_video_file(path, args.out, detector, args.video_max_side, stem), flush=True)
                else:
                    print(annotate_photo(path, args.out, detector, stem), flush=True)
            except (ImageError, VideoError, OSError) as error:
                raise_if_stopped()  # Ctrl+C reaches ffmpeg too, which can fail first: the stop, not the file
                failures += 1
                fail(error if str(path) in str(error) else f"{path}: {error}")
    finally:
        if created:  # stopped or failed before writing anything: leave no empty folder behind
            with contextlib.suppress(OSError):
                args.out.rmdir()
    return 1 if failures else 0


if __name__ == "__main__":
    run_and_exit(main)
