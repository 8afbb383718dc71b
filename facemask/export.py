"""A saved classifier as an ONNX or TensorFlow Lite file, checked against the Keras model.

    facemask export --model models/scratch.keras --format onnx
    facemask export --model models/scratch.keras --format tflite --quantize int8

writes `models/scratch.onnx` (`models/scratch-int8.tflite` for the second; `--out` names another
file), with the model's JSON sidecar beside it (`scratch.json` is shared with `scratch.keras`; an
export of another name gets a copy), so facemask.classifier loads it like the .keras file.

`--quantize int8` stores weights and activations as 8-bit integers, the activations' ranges
calibrated on training crops (`--calibration`, default DATA/train, the crops split.py cut);
`--quantize float16` halves the file and keeps float arithmetic. After the conversion the export is
compared with the Keras model on the test crops (DATA/test): agreement of the labels, accuracy of
both, the largest difference of a probability, the file sizes and milliseconds per face. The report
is printed and saved as `<file>.parity.json` beside the export, with the sha256 of the .keras file it
was made from: a command given `scratch.keras` serves `scratch.onnx` instead only while that record
matches the file (facemask.classifier.load_served). `facemask train` writes that float32
.onnx itself (`export_after_training`).

Conversions: Keras' own `model.export` (tf2onnx for ONNX; the TFLite converter through a
SavedModel for TFLite, the route that works with Keras 3), and ONNX Runtime's quantization tools
for ONNX int8 and float16.
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import argparse
from collections.abc import Sequence
from pathlib import Path

from facemask.classifier import report_path
from facemask.cli import ArgumentParser, fail, number_in, run_and_exit
from facemask.conversion import CALIBRATION_CROPS, FORMATS, QUANTIZATIONS, default_out, export, quiet_converters


def format_report(report: dict) -> str:
    mb = 1024 * 1024
    return "\n".join([
        f"{report['export']}: {report['format']} ({report['quantize']}), {report['bytes_export'] / mb:.2f} MB "
        f"(the .keras file {report['bytes_keras'] / mb:.2f} MB)",
        f"  on {report['crops']} test crops of {report['test_dir']}: labels agree on "
        f"{report['label_agreement']:.2%}; accuracy {report['accuracy_export']:.4f} (Keras "
        f"{report['accuracy_keras']:.4f}); largest probability difference "
        f"{report['max_abs_probability_difference']:.2e}",
        f"  one face per call: {report['ms_per_face_export']:.2f} ms per face "
        f"(Keras {report['ms_per_face_keras']:.2f})",
        f"  report: {report_path(Path(report['export']))}",
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="facemask export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, metavar="FILE", help="a saved .keras classifier")
    parser.add_argument("--format", choices=list(FORMATS), required=True, help="the file to write")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                        help="int8: integer weights and activations (calibrated); float16: half-size weights")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="the export (default: beside the model, e.g. scratch.onnx, scratch-int8.tflite)")
    parser.add_argument("--data", type=Path, default=Path("data"),
                        help="split.py's crop folder: its test/ checks the export, its train/ calibrates int8")
    parser.add_argument("--calibration", type=Path, default=None, metavar="DIR",
                        help="crops (DIR/mask, DIR/no-mask) calibrating int8 (default: DATA/train)")
    parser.add_argument("--calibration-crops", type=number_in(int, 1), default=CALIBRATION_CROPS, metavar="N",
                        help="how many of them, picked at random")
    args = parser.parse_args(argv)
    if args.model.suffix != ".keras":
        parser.error(f"--model {args.model}: export reads a .keras model")
    args.out = args.out or default_out(args.model, args.format, args.quantize)
    if args.out.suffix != FORMATS[args.format]:
        parser.error(f"--out {args.out}: a {args.format} file ends in {FORMATS[args.format]}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.model.is_file():
        return fail(f"model file not found: {args.model}")
    if not args.out.parent.is_dir():
        return fail(f"{args.out}: its folder {args.out.parent} does not exist")
    try:
        with quiet_converters():
            report = export(args.model, args.format, args.quantize, args.out, args.data, args.calibration,
                            args.calibration_crops)
    except (OSError, ValueError) as error:
        return fail(error)
    print(format_report(report), flush=True)
    return 0


if __name__ == "__main__":
    run_and_exit(main)
