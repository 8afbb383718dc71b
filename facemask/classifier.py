"""One mask classifier, whatever file it was saved as: `.keras`, `.onnx` or `.tflite`.

    classifier = load_classifier("models/scratch.onnx")
    classifier.predict_proba(crops)  # one row [P(mask), P(no-mask)] per face, in class_names order
    classifier.margin                # the crop margin its training crops were cut with (sidecar "margin")

`.keras` runs in Keras (TensorFlow), `.onnx` in ONNX Runtime, `.tflite` in LiteRT (ai-edge-litert,
TensorFlow Lite's interpreter as its own package). All three take the same input, RGB 0-255 at the
model's size (the models rescale inside), and share the JSON sidecar of facemask.models
(`models/scratch.onnx` reads `models/scratch.json`, the file `models/scratch.keras` reads). ONNX
Runtime is the runtime the commands use for speed: bench/classify_bench.py measured it against
LiteRT and OpenVINO on the same exports.

Every command's `--model` goes through `load_served`: any of the three formats, and for a `.keras`
file the `.onnx` beside it when it was exported from that very file (training writes it), so the
model the training command wrote is served at ONNX Runtime's speed with no extra step.

A file that is not a readable model, or not a classifier of fixed-size RGB images with one
probability per class, or whose classes are not the project's (`CLASS_NAMES`, in any order), is one
ValueError naming the file and what is wrong: `load_classifier` is the one place that checks it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from facemask import CLASS_NAMES, DEFAULT_MARGIN, not_a_regular_file
from facemask.cli import printable
from facemask.images import ImageError, load_image, to_model_input
from facemask.sidecar import check_input_size, crop_margin, read_sidecar, sidecar_path

MODEL_SUFFIXES = (".keras", ".onnx", ".tflite")
# Threads per model call. One: a face crop is a few million multiply-adds, too little to share out
# (bench/classify_bench.py), and the video path runs detection and encoding on the other core.
DEFAULT_THREADS = 1


def model_batch(images: Sequence[Image.Image | np.ndarray] | np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """float32 (n, height, width, 3), RGB 0-255, at the model's size.

    `images` are PIL images or arrays of any size, or one array already shaped (n, height, width, 3)
    at the model's size (uint8 or float, as facemask.images.to_model_input makes it), used as is.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1:] == (*input_size, 3):
        return images.astype(np.float32, copy=False)
    return to_model_input(images, input_size)


class Classifier:
    """A loaded classifier: `predict_proba(images)` gives one probability per class for each image.

    `input_size` is (height, width); `class_names` the order of the probabilities; `format` the
    file's kind (keras, onnx, tflite); `threads` how many threads a model call may use; `margin` the
    crop margin around a face, a fraction of its size per side, that the model's training crops were
    cut with (its sidecar's "margin"; DEFAULT_MARGIN for a model in memory or saved without one).
    """

    format: ClassVar[str] = ""
    # Whether `predict_proba` may run in several threads at once: ONNX Runtime's sessions allow it; TFLite's
    # interpreter and a Keras model called this way do not promise it.
    thread_safe: ClassVar[bool] = False

    def __init__(self, path: Path, class_names: Sequence[str], input_size: tuple[int, int], threads: int):
        self.path = path
        self.class_names = list(class_names)
        self.input_size = input_size
        self.threads = threads
        self.margin = DEFAULT_MARGIN

    def predict_proba(self, images: Sequence[Image.Image | np.ndarray] | np.ndarray,
                      batch_size: int = 32) -> np.ndarray:
        """One row of probabilities per image (float32, shape (n, classes)), `batch_size` images per call."""
        if len(images) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        batch = model_batch(images, self.input_size)
        chunks = [self._run(np.ascontiguousarray(batch[start:start + batch_size]))
                  for start in range(0, len(batch), batch_size)]
        return np.concatenate([np.asarray(chunk, dtype=np.float32) for chunk in chunks])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.path} ({self.format}, input {self.input_size[0]}x{self.input_size[1]}, {self.threads} thread(s))"


class KerasClassifier(Classifier):
    """A Keras model; `model` is the keras.Model (for its name, parameters, training).

    `KerasClassifier.load(path)` reads a `.keras` file; `KerasClassifier(model, class_names)` wraps
    a model in memory (the one training just fitted). TensorFlow picks its own threads.
    """

    format = "keras"

    def __init__(self, model, class_names: Sequence[str] = CLASS_NAMES, path: Path | None = None):
        self.model = model
        name = getattr(model, "name", type(model).__name__)
        super().__init__(path or Path(f"{name}.keras"), class_names, tuple(model.input_shape[1:3]),
                         os.cpu_count() or 1)

    @classmethod
    def load(cls, path: Path, threads: int | None = None) -> KerasClassifier:
        from facemask.models import load_model  # Keras and TensorFlow load only for a .keras file

        model, class_names = load_model(path)
        return cls(model, class_names, path)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        # predict_on_batch, not predict: predict builds a tf.data pipeline and a progress loop on every
        # call, which for the few faces of one video frame costs more than the network itself
        # (bench/detect_bench.py).
        trace_for_any_batch_size(self.model)
        return self.model.predict_on_batch(batch)


def trace_for_any_batch_size(model) -> None:
    """Trace the graph of Keras' predict step once, for float32 batches of any size; later calls reuse it.

    Left to itself, predict_on_batch traces a graph for the first batch size it meets and again, with
    the size left open, for the next one (a smaller last batch). Keras gives every model's predict step
    the same code, so TensorFlow counts those traces together and, after five in a few calls (a
    notebook scoring and reloading a few models on a small test split), warns of "excessive retracing".
    A trace asked for with `get_concrete_function` is neither repeated nor counted. Objects that are
    not Keras models (anything with `predict_on_batch`) are left alone.
    """
    if not hasattr(model, "make_predict_function"):
        return
    model.make_predict_function()  # Keras' own, made again after each compile()
    function = model.predict_function
    if hasattr(function, "experimental_get_tracing_count") and function.experimental_get_tracing_count() == 0:
        import tensorflow as tf

        # predict_on_batch(x) calls predict_function([(x,)]).
        function.get_concrete_function([(tf.TensorSpec((None, *model.input_shape[1:]), tf.float32),)])


def as_classifier(model, class_names: Sequence[str] = CLASS_NAMES) -> Classifier:
    """`model` as a Classifier: a Classifier as it is; a Keras model in memory (or anything with
    `predict_on_batch` and `input_shape`, as the tests' doubles) wrapped in a KerasClassifier."""
    return model if isinstance(model, Classifier) else KerasClassifier(model, class_names)


def predict_proba(model, images: Sequence[Image.Image | np.ndarray] | np.ndarray, batch_size: int = 32) -> np.ndarray:
    """One row [P(mask), P(no-mask)] per image (in the model's class order), `batch_size` images per call.

    `model` is a Classifier (any format) or a Keras model in memory. `images` are PIL images or arrays
    of any size, or an array already shaped (n, height, width, 3) at the model's size, as
    facemask.images.to_model_input makes it, which is used as is.
    """
    return as_classifier(model).predict_proba(images, batch_size=batch_size)


def predict_files(
    model, paths: Sequence[Path | str], batch_size: int = 32
) -> Iterator[tuple[Path | str, np.ndarray | ImageError]]:
    """(path, probabilities) for each file in order, or (path, ImageError) for an unreadable one.

    `model` as for predict_proba. Files are read `batch_size` at a time and shrunk to the model's size
    as soon as they are decoded, so a folder of large photos never sits in memory at full resolution.
    """
    classifier = as_classifier(model)
    image_size = classifier.input_size
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        errors: list[ImageError | None] = []  # None where the image was read
        inputs = []
        for path in chunk:
            try:
                inputs.append(to_model_input([load_image(path)], image_size)[0])
                errors.append(None)
            except ImageError as error:
                errors.append(error)
        rows = iter(classifier.predict_proba(np.stack(inputs) if inputs else [], batch_size=batch_size))
        for path, error in zip(chunk, errors, strict=True):
            yield path, (next(rows) if error is None else error)


def in_project_order(probabilities: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """The columns of `probabilities` (in the order `class_names`) put in CLASS_NAMES order, as the
    scoring of facemask.metrics reads them, whatever order the model's outputs are in."""
    return np.asarray(probabilities)[:, [list(class_names).index(name) for name in CLASS_NAMES]]


class OnnxClassifier(Classifier):
    """An `.onnx` model (facemask.export writes them) in ONNX Runtime, on the CPU."""

    format = "onnx"
    thread_safe = True

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime

        threads = threads or DEFAULT_THREADS
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings are not the user's business
        # No busy-waiting between calls: the other stages of a video frame need the cores then.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime raises its own types for a corrupt or foreign file
            raise ValueError(f"{path}: not a readable ONNX model ({_first_line(error)})") from error
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = tuple(inputs[0].shape) if len(inputs) == 1 else None
        if len(inputs) != 1 or inputs[0].type != "tensor(float)":
            raise ValueError(f"{path}: the model takes {len(inputs)} inputs of type "
                             f"{', '.join(i.type for i in inputs)}; a classifier here takes one float image batch")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        input_size = _image_size(path, shape)
        class_names = _class_names(path, input_size, [tuple(o.shape) for o in outputs])
        super().__init__(path, class_names, input_size, threads)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]


class LiteRTClassifier(Classifier):
    """A `.tflite` model in LiteRT (the ai-edge-litert package, TensorFlow Lite's interpreter)."""

    format = "tflite"

    def __init__(self, path: Path, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        threads = threads or DEFAULT_THREADS
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        except Exception as error:  # a foreign flatbuffer is a ValueError, a truncated one a RuntimeError
            raise ValueError(f"{path}: not a readable TensorFlow Lite model ({_first_line(error)})") from error
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or inputs[0]["dtype"] != np.float32:
            raise ValueError(f"{path}: the model takes {len(inputs)} inputs of type "
                             f"{', '.join(str(np.dtype(i['dtype'])) for i in inputs)}; a classifier here takes "
                             "one float32 image batch")
        self.input_index, self.output_index = inputs[0]["index"], outputs[0]["index"]
        shape = tuple(int(v) if v > 0 else None for v in inputs[0]["shape_signature"])
        input_size = _image_size(path, shape)
        output_shapes = [tuple(int(v) if v > 0 else None for v in o["shape_signature"]) for o in outputs]
        class_names = _class_names(path, input_size, output_shapes)
        super().__init__(path, class_names, input_size, threads)
        self.batch_size = 0  # the batch the tensors are allocated for

    def _run(self, batch: np.ndarray) -> np.ndarray:
        # Tensors are allocated for one batch size; a frame with another number of faces re-allocates.
        if len(batch) != self.batch_size:
            self.interpreter.resize_tensor_input(self.input_index, batch.shape)
            self.interpreter.allocate_tensors()
            self.batch_size = len(batch)
        self.interpreter.set_tensor(self.input_index, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index).copy()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _image_size(path: Path, shape: tuple | None) -> tuple[int, int]:
    """(height, width) of an input shaped (batch, height, width, 3) with both sides fixed and within
    facemask.models' bounds (what a .keras file is held to), else ValueError."""
    if not (shape is not None and len(shape) == 4 and shape[3] == 3
            and all(isinstance(v, int) and v > 0 for v in shape[1:3])):
        raise ValueError(f"{path}: the model's input shape is {shape}; a classifier here takes RGB images "
                         "of a fixed size, (batch, height, width, 3)")
    check_input_size(shape[1:3], path)
    return shape[1], shape[2]


def _class_names(path: Path, input_size: tuple[int, int], output_shapes: list[tuple]) -> list[str]:
    """The class names of the sidecar (or the project's), checked against the model's size and output."""
    sidecar = sidecar_path(path)
    if problem := not_a_regular_file(sidecar):
        raise ValueError(f"{sidecar}: {problem}")
    meta = read_sidecar(sidecar) if sidecar.exists() else {"class_names": list(CLASS_NAMES)}
    if "image_size" in meta and tuple(meta["image_size"]) != input_size:
        raise ValueError(f"{sidecar}: 'image_size' is {list(meta['image_size'])} but the model {path} takes "
                         f"{list(input_size)}")
    names = meta["class_names"]
    if len(output_shapes) != 1 or len(output_shapes[0]) != 2 or output_shapes[0][1] != len(names):
        raise ValueError(f"{path}: the model's outputs are {output_shapes}, not one probability for each of its "
                         f"{len(names)} classes {names}")
    return names


# Suffix -> what loads such a file: (path, threads) -> Classifier.
CLASSIFIERS: dict[str, Callable[[Path, int | None], Classifier]] = {
    ".keras": KerasClassifier.load, ".onnx": OnnxClassifier, ".tflite": LiteRTClassifier}


def load_classifier(path: Path | str, threads: int | None = None) -> Classifier:
    """The classifier saved in `path` (.keras, .onnx or .tflite), with its class names and crop margin.

    FileNotFoundError for a missing file; ValueError naming the file for another suffix, a file the
    runtime cannot read, a model that is not a fixed-size RGB classifier, a bad sidecar, or classes
    other than the project's (the one check of them: every command serves through here).
    """
    path = Path(path)
    if path.suffix.lower() not in CLASSIFIERS:
        raise ValueError(f"{path}: a model file ends in {', '.join(MODEL_SUFFIXES)}")
    if problem := not_a_regular_file(path):  # a FIFO would block the runtime's read forever
        raise ValueError(f"{path}: {problem}")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    classifier = CLASSIFIERS[path.suffix.lower()](path, threads)
    if sorted(classifier.class_names) != sorted(CLASS_NAMES):
        raise ValueError(f"{path}: the model has {len(classifier.class_names)} outputs for classes "
                         f"{classifier.class_names}; expected {CLASS_NAMES}")
    classifier.margin = crop_margin(path)
    return classifier


def report_path(out: Path) -> Path:
    """The parity report facemask.export writes beside an export: `scratch.onnx.parity.json`."""
    return out.with_name(out.name + ".parity.json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def not_a_copy(model_path: Path, export_path: Path) -> str | None:
    """Why the export `export_path` cannot stand in for the .keras file `model_path` as it is now, or None
    when its parity report records a float32 export of exactly these bytes (the sha256 taken at export)."""
    report = report_path(export_path)
    if problem := not_a_regular_file(report):
        return f"{report}: {problem}"
    if not report.is_file():
        return f"no {report.name} records which model it was exported from"
    try:
        record = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        return f"{report.name} cannot be read ({type(error).__name__})"
    if not isinstance(record, dict) or record.get("keras_sha256") != file_sha256(model_path):
        return f"it was not exported from {model_path} as that file is now"
    if record.get("quantize") != "none":
        return f"it is a {record.get('quantize')} export, not float32"
    return None


def say_on_stderr(line: str) -> None:
    print(printable(line), file=sys.stderr, flush=True)


def load_served(path: Path | str, threads: int | None = None,
                say: Callable[[str], None] = say_on_stderr) -> Classifier:
    """The classifier a command serves for the model file `path`: what every `--model` loads.

    A `.keras` file with an `.onnx` of the same name beside it, exported from that very file (the
    export's parity report records the .keras file's sha256: facemask.export, which training runs), is
    served from the .onnx by ONNX Runtime: the same probabilities to float rounding, several times
    faster per face. An .onnx exported from another file or an earlier version of this one, with no
    record, or one ONNX Runtime cannot load is ignored and the .keras served. `say` gets one line
    saying which file is served instead of `path`, or why the .onnx beside it is not. Any other file
    is loaded as it is (load_classifier), with the same errors.
    """
    path = Path(path)
    beside = path.with_suffix(".onnx")
    if path.suffix.lower() != ".keras" or not path.is_file() or not beside.exists():
        return load_classifier(path, threads)
    problem = not_a_regular_file(beside) or not_a_copy(path, beside)
    if problem is None:
        try:
            classifier = load_classifier(beside, threads)
        except ValueError as error:
            problem = str(error)
        else:
            say(f"serving {beside} (ONNX Runtime), exported from {path}")
            return classifier
    say(f"warning: {beside} ignored ({problem}); serving {path} (Keras)")
    return load_classifier(path, threads)
