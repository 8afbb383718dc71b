"""A saved classifier converted to ONNX or TensorFlow Lite and checked against the Keras model
(`facemask export` is its command; training calls `export_after_training`).

The export is written with the model's JSON sidecar beside it (`scratch.json` is shared with
`scratch.keras`; an export of another name gets a copy), so facemask.classifier loads it like the
.keras file. int8 stores weights and activations as 8-bit integers, the activations' ranges calibrated
on training crops; float16 halves the file and keeps float arithmetic. After the conversion the export
is compared with the Keras model on the test crops: agreement of the labels, accuracy of both, the
largest difference of a probability, the file sizes and milliseconds per face. The report is saved as
`<file>.parity.json` beside the export, with the sha256 of the .keras file it was made from: a command
given `scratch.keras` serves `scratch.onnx` instead only while that record matches the file
(facemask.classifier.load_served).

Conversions: Keras' own `model.export` (tf2onnx for ONNX; the TFLite converter through a
SavedModel for TFLite, the route that works with Keras 3), and ONNX Runtime's quantization tools
for ONNX int8 and float16 (onnx, onnxruntime's tools and TensorFlow's converter imported by the
conversion that uses each).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from facemask import save_atomically, save_json
from facemask.classifier import KerasClassifier, file_sha256, load_classifier, report_path
from facemask.evaluation import split_images
from facemask.images import load_image, to_model_input
from facemask.sidecar import read_sidecar, sidecar_path

FORMATS = {"onnx": ".onnx", "tflite": ".tflite"}
QUANTIZATIONS = ("int8", "float16")
CALIBRATION_CROPS = 200  # enough for stable activation ranges; more only slows the export
TIMED_FACES = 60  # faces timed one at a time for the report's milliseconds per face
# A float32 export computes what Keras computes in another order: probabilities agree to rounding.
FLOAT32_TOLERANCE = 1e-4
# Networks whose .onnx training does not write (`facemask export` still makes one), and why.
NOT_EXPORTED_AFTER_TRAINING = {
    # Its conversion is measured in bench/README.md ("What the commands serve").
    "vgg16": "VGG16's conversion and check take minutes and gigabytes of memory, for a small gain per face",
}


class ExportError(ValueError):
    """An export that could not be made or checked; the message names the file."""


def default_out(model_path: Path, fmt: str, quantize: str | None) -> Path:
    """`models/scratch.keras` -> `models/scratch.onnx`, or `models/scratch-int8.tflite` when quantized."""
    suffix = f"-{quantize}" if quantize else ""
    return model_path.with_name(f"{model_path.stem}{suffix}{FORMATS[fmt]}")


def sample_crops(folder: Path, image_size: tuple[int, int], limit: int, seed: int = 0) -> np.ndarray:
    """Up to `limit` crops of `folder/<class>/`, picked at random (fixed seed), float32 at the model's size."""
    files, _ = split_images(folder)
    picked = np.random.default_rng(seed).permutation(len(files))[:limit]
    return to_model_input([load_image(files[i]) for i in sorted(picked)], image_size)


def _call_once(model) -> None:
    """Keras exports only a model that has been called (a freshly loaded one has not)."""
    model.predict_on_batch(np.zeros((1, *model.input_shape[1:]), dtype=np.float32))


def export_onnx(model, target: Path, quantize: str | None, calibration: np.ndarray | None) -> None:
    """Write `model` to `target` as ONNX (float32, float16 weights and arithmetic, or int8 QDQ)."""
    _call_once(model)
    with tempfile.TemporaryDirectory(prefix="facemask-export-") as folder:
        plain = Path(folder) / "model.onnx"
        model.export(str(plain), format="onnx", verbose=False)
        if quantize is None:
            target.write_bytes(plain.read_bytes())
        elif quantize == "float16":
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16

            # Inputs and outputs stay float32, so callers feed the same arrays whatever the file.
            onnx.save(convert_float_to_float16(onnx.load(str(plain)), keep_io_types=True), str(target))
        else:
            from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
            from onnxruntime.quantization.shape_inference import quant_pre_process

            prepared = Path(folder) / "prepared.onnx"
            # Shapes inferred and the graph folded, as ORT advises; ONNX's own shape inference suffices here
            # (fixed image sizes), so no sympy for the symbolic one.
            quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
            input_name = _onnx_input_name(prepared)

            class Crops(CalibrationDataReader):
                def __init__(self) -> None:
                    self.rows = iter(calibration)

                def get_next(self) -> dict | None:
                    row = next(self.rows, None)
                    return None if row is None else {input_name: row[None]}

            # QDQ, unsigned 8-bit activations and signed weights: ORT's advice for x86 and ARM CPUs alike.
            quantize_static(str(prepared), str(target), Crops(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)


def _onnx_input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path)).graph.input[0].name


def export_tflite(model, target: Path, quantize: str | None, calibration: np.ndarray | None) -> None:
    """Write `model` to `target` as TensorFlow Lite (float32, float16 weights, or int8 with float I/O)."""
    import tensorflow as tf

    _call_once(model)

    options: dict = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}  # no TF ops: LiteRT alone
    if quantize == "float16":
        options = {"optimizations": [tf.lite.Optimize.DEFAULT],
                   "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS],
                                   "supported_types": [tf.float16]}}
    elif quantize == "int8":
        def crops():
            for row in calibration:
                yield [row[None]]

        # Every operation in int8; the input and output stay float32 (quantized inside the model).
        options = {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": crops,
                   "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}}
    # Keras writes the file itself and insists on the .tflite suffix.
    with tempfile.TemporaryDirectory(prefix="facemask-export-") as folder:
        written = Path(folder) / "model.tflite"
        model.export(str(written), format="litert", verbose=False, **options)
        target.write_bytes(written.read_bytes())


EXPORTERS = {"onnx": export_onnx, "tflite": export_tflite}


def time_per_face(classifier, crops: np.ndarray, rounds: int = 3) -> float:
    """Milliseconds per face, one face per call (the webcam case), best of `rounds`."""
    classifier.predict_proba(crops[:1])  # warm up
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(len(crops)):
            classifier.predict_proba(crops[i:i + 1])
        best = min(best, (time.perf_counter() - started) / len(crops))
    return 1000 * best


def parity(reference, exported, test_dir: Path) -> dict:
    """The export against the Keras model on every crop of `test_dir`: labels, accuracy, probabilities, speed."""
    files, labels = split_images(test_dir, reference.class_names)
    crops = to_model_input([load_image(f) for f in files], reference.input_size)
    expected, found = reference.predict_proba(crops), exported.predict_proba(crops)
    expected_labels, found_labels = expected.argmax(axis=1), found.argmax(axis=1)
    timed = crops[:TIMED_FACES]
    return {
        "test_dir": str(test_dir), "crops": len(files),
        "label_agreement": float(np.mean(expected_labels == found_labels)),
        "accuracy_keras": float(np.mean(expected_labels == labels)),
        "accuracy_export": float(np.mean(found_labels == labels)),
        "max_abs_probability_difference": float(np.abs(expected - found).max()),
        "ms_per_face_keras": time_per_face(reference, timed),
        "ms_per_face_export": time_per_face(exported, timed),
    }


def write_sidecar(model_path: Path, out: Path, class_names: list[str], image_size: tuple[int, int]) -> Path:
    """The export's sidecar: the model's own when they share one, else a copy of it (or a new one)."""
    source, target = sidecar_path(model_path), sidecar_path(out)
    if target.resolve() == source.resolve() and source.exists():
        return target
    if source.exists():
        read_sidecar(source)  # checked before it is copied
        meta = json.loads(source.read_text(encoding="utf-8"))
    else:
        meta = {"class_names": class_names, "image_size": list(image_size)}
    return save_json(target, meta)


def export(model_path: Path, fmt: str, quantize: str | None, out: Path, data: Path,
           calibration_dir: Path | None, calibration_crops: int = CALIBRATION_CROPS) -> dict:
    """Convert, check and write the export, its sidecar and its parity report; returns the report."""
    test_dir, calibration_dir = data / "test", calibration_dir or data / "train"
    for folder in [test_dir] + ([calibration_dir] if quantize == "int8" else []):
        if not folder.is_dir():
            raise ExportError(f"{folder}: crop folder not found (the test crops check the export, the training "
                              "crops calibrate int8; make them with split.py, or name them with --data/--calibration)")
    reference = KerasClassifier.load(model_path)
    calibration = (sample_crops(calibration_dir, reference.input_size, calibration_crops)
                   if quantize == "int8" else None)
    with tempfile.TemporaryDirectory(prefix="facemask-export-", dir=out.parent) as folder:
        # Beside its final place: loaded and checked there, then moved in whole.
        draft = Path(folder) / f"{out.stem}{out.suffix}"
        try:
            EXPORTERS[fmt](reference.model, draft, quantize, calibration)
        except Exception as error:  # the converters raise many types
            raise ExportError(f"{model_path}: the {fmt} conversion failed ({type(error).__name__}: "
                              f"{str(error).strip().splitlines()[0] if str(error).strip() else ''})") from error
        write_sidecar(model_path, draft, reference.class_names, reference.input_size)
        exported = load_classifier(draft)
        report = {"model": str(model_path), "export": str(out), "format": fmt, "quantize": quantize or "none",
                  "calibration": None if calibration is None else {"dir": str(calibration_dir),
                                                                   "crops": len(calibration)},
                  "bytes_keras": model_path.stat().st_size, "bytes_export": draft.stat().st_size,
                  "keras_sha256": file_sha256(model_path)}
        report |= parity(reference, exported, test_dir)
        save_atomically(out, lambda target: target.write_bytes(draft.read_bytes()))
    write_sidecar(model_path, out, reference.class_names, reference.input_size)
    save_json(report_path(out), report)
    return report


@contextlib.contextmanager
def quiet_converters() -> Iterator[None]:
    """The converters' progress lines, and Keras' FutureWarning about numpy 2's np.object, are not the
    user's business."""
    for name in ("tf2onnx", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"keras\.src\.export")
        yield


def export_after_training(model_path: Path, arch: str, data: Path) -> str:
    """`facemask train`'s last step: the float32 `<out>/<arch>.onnx` beside the .keras it just
    saved, checked against it on DATA/test like any export, so the commands serve it (load_served).

    Returns the line to print. The .keras file is the product: an arch left out, a conversion that
    fails or an export whose probabilities differ from Keras' by more than FLOAT32_TOLERANCE costs the
    .onnx (removed), with the line saying why, never the training."""
    out = default_out(model_path, "onnx", None)
    if arch in NOT_EXPORTED_AFTER_TRAINING:
        return f"no {out.name} written: {NOT_EXPORTED_AFTER_TRAINING[arch]} (facemask export makes one)"
    started = time.perf_counter()
    try:
        with quiet_converters():
            report = export(model_path, "onnx", None, out, data, None)
    except (OSError, ValueError) as error:
        return f"no {out.name} written: {error}"
    except Exception as error:  # a runtime's own failure; the trained model is saved and stays served
        return f"no {out.name} written: {type(error).__name__}: {str(error).strip()[:300]}"
    if report["max_abs_probability_difference"] > FLOAT32_TOLERANCE:
        for path in (out, report_path(out)):
            path.unlink(missing_ok=True)
        return (f"no {out.name} kept: its probabilities differ from the .keras model's by up to "
                f"{report['max_abs_probability_difference']:.2g} on {report['crops']} test crops")
    return (f"saved {out} for ONNX Runtime, which the commands serve in place of {model_path.name}: "
            f"{report['ms_per_face_export']:.2f} ms per face against {report['ms_per_face_keras']:.2f} in Keras, "
            f"labels agreeing on {report['label_agreement']:.2%} of {report['crops']} test crops "
            f"(exported and checked in {time.perf_counter() - started:.1f} s)")
