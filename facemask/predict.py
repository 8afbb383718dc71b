"""[P(mask), P(no-mask)] for face images, from a saved model.

    facemask predict --model models/compact.keras face1.jpg face2.png

`--model` is a .keras file or its .onnx or .tflite export; the .onnx training wrote beside a .keras
file is served in its place (facemask.classifier.load_served, which says so on stderr).

prints one tab-separated line per image, in the order given:

    face1.jpg	mask	P(mask)=0.9731	P(no-mask)=0.0269

The label is no-mask when P(no-mask) is at least the model's decision threshold, chosen on the validation
split at training time and kept in its sidecar (0.5 for a model saved without one), or `--threshold`.

Images are read in any mode (RGB, RGBA flattened onto white, grey, palette, 16-bit) with their EXIF orientation
applied, and classified in batches of `--batch-size`, so memory stays bounded however many files
are named. An image that cannot be read does not stop the others: its `error: <file>: <what>`
line goes to stderr, the readable images are still printed, and the exit status is 1. A missing
or unreadable model is an `error:` line and exit status 1 before any image is read.
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facemask.classifier import load_served, predict_files
from facemask.cli import ArgumentParser, add_threshold_options, fail, number_in, run_and_exit
from facemask.images import ImageError
from facemask.metrics import predicted_classes
from facemask.sidecar import decision_threshold


def format_prediction(name: str, probabilities: np.ndarray, class_names: Sequence[str],
                      threshold: float = 0.5) -> str:
    """`face.jpg<TAB>mask<TAB>P(mask)=0.9731<TAB>P(no-mask)=0.0269`; no-mask from P(no-mask) >= `threshold`."""
    label = class_names[int(predicted_classes(np.asarray(probabilities)[None], threshold, class_names)[0])]
    columns = [f"P({cls})={float(p):.4f}" for cls, p in zip(class_names, probabilities, strict=True)]
    return "\t".join([name, label, *columns])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="facemask predict",
        description="Print file, label, P(mask) and P(no-mask) for each face image, one line per image.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="face crops (any format Pillow reads)")
    parser.add_argument("--model", type=Path, required=True, metavar="FILE",
                        help="a model saved by facemask: .keras, or its .onnx/.tflite export")
    add_threshold_options(parser, face=False)
    parser.add_argument("--batch-size", type=number_in(int, 1), default=32, help="images per model call")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        classifier = load_served(args.model)
        threshold = decision_threshold(args.model) if args.threshold is None else args.threshold
    except (FileNotFoundError, ValueError) as error:
        return fail(error)
    failures = 0
    for path, outcome in predict_files(classifier, args.images, batch_size=args.batch_size):
        if isinstance(outcome, ImageError):
            failures += 1
            fail(outcome)
        else:
            print(format_prediction(str(path), outcome, classifier.class_names, threshold), flush=True)
    if failures:
        return fail(f"{failures} of {len(args.images)} images could not be read")
    return 0


if __name__ == "__main__":
    run_and_exit(main)
