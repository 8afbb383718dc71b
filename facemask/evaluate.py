"""`facemask evaluate`: a saved classifier scored on face crops or, with a face detector, on photos.

    facemask evaluate crops --model FILE SPLIT_DIR [--threshold P] [--manifest FILE] [--reports DIR]
    facemask evaluate photos --model FILE IMAGES CSV [--detector NAME] [--reports DIR]
                                [--split-manifest data/manifest.csv [--split test] | --photos-list FILE]

`crops` scores the classifier on a folder of face crops (`data/test`), as training does at its end, and
by face size (split.py's manifest, `SPLIT_DIR/../manifest.csv` or `--manifest`). `photos` scores face
detector and classifier together on annotated photos in the Kaggle layout; `--split-manifest` keeps only
the photos of one split.py split, so detection is never scored on photos the classifier trained on. The
decision threshold on P(no-mask) and the crop margin are the model's own (its sidecar's) unless
`--threshold` / `--margin`. facemask.evaluation does the work; one `error:` line and exit 2 for a bad
command line, 1 for bad input (see facemask.cli).
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from facemask import MAX_MARGIN, SPLITS
from facemask.cli import ArgumentParser, add_threshold_options, fail, number_in, run_and_exit
from facemask.detectors import DEFAULT_DETECTOR, FACE_DETECTORS
from facemask.evaluation import EvaluationError, evaluate_model, evaluate_photos, load_scored_model
from facemask.images import ImageError
from facemask.reports import format_photos_report, format_report


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="facemask evaluate", description="Score a saved classifier on face crops "
                     "or, with a face detector, on annotated photos.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{crops,photos}")
    crops = commands.add_parser("crops", help="the classifier on a folder of crops (SPLIT_DIR/mask, SPLIT_DIR/no-mask)")
    photos = commands.add_parser("photos", help="face detector + classifier on annotated photos (Kaggle layout)")
    for command in (crops, photos):
        command.add_argument("--model", type=Path, required=True, metavar="FILE",
                             help="a model saved by facemask: .keras, or its .onnx/.tflite export")
    crops.add_argument("split_dir", type=Path, help="e.g. data/test")
    crops.add_argument("--manifest", type=Path, default=None, metavar="FILE",
                       help="split.py's manifest.csv, for the face sizes (default: SPLIT_DIR/../manifest.csv if "
                            "there is one)")
    photos.add_argument("images", type=Path, help="folder of the photos the CSV names")
    photos.add_argument("csv", type=Path,
                        help="train.csv: name,x1,x2,y1,y2,classname (x1..y2 hold xmin,ymin,xmax,ymax)")
    photos.add_argument("--detector", choices=list(FACE_DETECTORS), default=DEFAULT_DETECTOR, help="face detector")
    photos.add_argument("--margin", type=number_in(float, 0, MAX_MARGIN), default=None,
                        help=f"crop margin, 0 to {MAX_MARGIN:g} (default: the one the model was trained with, "
                             "from its sidecar)")
    chosen = photos.add_mutually_exclusive_group()
    chosen.add_argument("--split-manifest", type=Path, metavar="MANIFEST",
                        help="split.py's manifest.csv: score only the photos of --split")
    chosen.add_argument("--photos-list", type=Path, metavar="FILE", help="score only these photos (one name a line)")
    photos.add_argument("--split", choices=SPLITS, default="test", help="with --split-manifest: which split's photos")
    add_threshold_options(crops, face=False)
    add_threshold_options(photos)  # AP ranks every face found; recall and precision count from --face-threshold
    for command in (crops, photos):
        command.add_argument("--reports", type=Path, default=Path("reports"), help="folder for the reports")
        command.add_argument("--name", default=None, help="report file prefix (default: the model's file name)")
    return parser


def crops_command(args: argparse.Namespace) -> int:
    classifier, threshold = load_scored_model(args.model)
    metrics = evaluate_model(classifier, args.split_dir, args.reports, name=args.name or args.model.stem,
                             threshold=threshold if args.threshold is None else args.threshold,
                             manifest=args.manifest)
    print(format_report(metrics))
    print(f"reports written to {args.reports} ({metrics['paths']['metrics']})")
    return 0


def photos_command(args: argparse.Namespace) -> int:
    report = evaluate_photos(args.model, args.images, args.csv, args.reports, args.detector, name=args.name,
                             margin=args.margin, threshold=args.threshold, face_threshold=args.face_threshold,
                             split_manifest=args.split_manifest, split=args.split, photos_list=args.photos_list)
    for problem in report["unreadable_photos"][:20]:
        print(f"warning: {problem}; photo skipped", file=sys.stderr)
    print(format_photos_report(report))
    paths = report["paths"]
    print(f"reports written to {args.reports} ({Path(paths['metrics']).name}, {Path(paths['pr_curve']).name})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed
        return exit_.code if isinstance(exit_.code, int) else 0
    try:
        return crops_command(args) if args.command == "crops" else photos_command(args)
    except (EvaluationError, ImageError, FileNotFoundError, ValueError, OSError) as error:
        return fail(error)


if __name__ == "__main__":
    run_and_exit(main)
