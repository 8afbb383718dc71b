"""facemask.export and facemask.classifier: every format behind one interface, checked against Keras."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SHARED, requires_shared
from PIL import Image

from facemask import CLASS_NAMES
from facemask.classifier import load_classifier, model_batch

SIZE = 32
# float32 exports compute what Keras computes, in another order: probabilities agree to rounding.
FLOAT_TOLERANCE = 1e-5
FLOAT16_TOLERANCE = 5e-3


def build_small_net(size: int = SIZE):
    """The kind of network the compact classifier is (separable convolutions, batch norm, a residual
    add, global pooling, softmax), small enough to train in seconds on the sample crops."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3), name="rgb")
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, strides=2, padding="same")(x)))
    y = layers.ReLU()(layers.BatchNormalization()(layers.SeparableConv2D(8, 3, padding="same")(x)))
    x = layers.Add()([x, y])
    x = layers.ReLU()(layers.DepthwiseConv2D(3, padding="same")(x))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(2, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="small_net")


@pytest.fixture(scope="module")
def trained_net(real_sample_crops, tmp_path_factory) -> Path:
    """The small net trained a few epochs on the real sample's crops, saved with its sidecar."""
    from facemask.evaluation import split_images
    from facemask.images import load_image, to_model_input
    from facemask.models import save_model

    files, labels = split_images(real_sample_crops / "train")
    crops = to_model_input([load_image(f) for f in files], (SIZE, SIZE))
    model = build_small_net()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(crops, labels, epochs=15, batch_size=16, verbose=0)
    return save_model(model, tmp_path_factory.mktemp("net") / "small.keras")


def run_export(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facemask.export", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT)


def test_a_keras_model_in_memory_answers_through_the_same_interface():
    from conftest import build_colour_model, colour_probabilities

    from facemask.classifier import KerasClassifier

    classifier = KerasClassifier(build_colour_model(), CLASS_NAMES)
    assert (classifier.format, classifier.input_size, classifier.class_names) == ("keras", (16, 16), CLASS_NAMES)
    found = classifier.predict_proba([Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (8, 8), (0, 0, 90))])
    np.testing.assert_allclose(found, [colour_probabilities((200, 10, 10)), colour_probabilities((0, 0, 90))],
                               atol=1e-6)
    assert classifier.predict_proba([]).shape == (0, 2)


def test_model_batch_takes_images_of_any_size_and_model_sized_arrays_as_they_are():
    arrays = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    batch = model_batch(arrays, (SIZE, SIZE))
    assert batch.dtype == np.float32 and np.array_equal(batch, arrays)
    resized = model_batch([Image.new("RGB", (50, 20), (10, 20, 30)), np.zeros((7, 9, 3), np.uint8)], (SIZE, SIZE))
    assert resized.shape == (2, SIZE, SIZE, 3) and resized[0, 5, 5].tolist() == [10, 20, 30]


@pytest.mark.slow
@pytest.mark.parametrize("fmt, quantize", [("onnx", None), ("tflite", None), ("onnx", "float16"),
                                           ("tflite", "float16"), ("onnx", "int8"), ("tflite", "int8")])
def test_an_export_loads_through_the_one_interface_and_agrees_with_keras(trained_net, real_sample_crops,
                                                                         tmp_path, fmt, quantize):
    from facemask.classifier import report_path
    from facemask.conversion import default_out

    model = tmp_path / trained_net.name
    for path in (trained_net, trained_net.with_suffix(".json")):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    options = ["--quantize", quantize] if quantize else []
    result = run_export("--model", str(model), "--format", fmt, *options, "--data", str(real_sample_crops))
    assert result.returncode == 0, result.stderr
    out = default_out(model, fmt, quantize)
    assert out.name == f"small{'-' + quantize if quantize else ''}.{fmt}" and str(out) in result.stdout

    keras_model, exported = load_classifier(model), load_classifier(out)
    assert (exported.format, exported.input_size, exported.class_names) == (fmt, (SIZE, SIZE), CLASS_NAMES)
    from facemask.evaluation import split_images
    from facemask.images import load_image

    files, _ = split_images(real_sample_crops / "test")
    crops = [load_image(f) for f in files]
    expected, found = keras_model.predict_proba(crops), exported.predict_proba(crops)
    assert found.shape == expected.shape == (len(files), 2)
    agreement = np.mean(expected.argmax(axis=1) == found.argmax(axis=1))
    if quantize == "int8":
        assert agreement >= 0.95  # 8-bit activations move a probability by a few hundredths
    else:
        tolerance = FLOAT16_TOLERANCE if quantize == "float16" else FLOAT_TOLERANCE
        np.testing.assert_allclose(found, expected, atol=tolerance)
        assert agreement == 1.0
    # One face at a time gives the same rows as the batch (LiteRT re-allocates between batch sizes).
    np.testing.assert_allclose(np.concatenate([exported.predict_proba(crops[i:i + 1]) for i in range(3)]),
                               found[:3], atol=1e-6)

    report = json.loads(report_path(out).read_text())
    assert report["crops"] == len(files) and report["format"] == fmt and report["quantize"] == (quantize or "none")
    assert report["label_agreement"] == pytest.approx(agreement)
    assert report["bytes_export"] == out.stat().st_size and report["ms_per_face_export"] > 0
    assert (report["calibration"] is not None) == (quantize == "int8")


@pytest.mark.slow
def test_the_sidecar_travels_with_an_export_of_another_name(trained_net, real_sample_crops, tmp_path):
    sidecar = json.loads(trained_net.with_suffix(".json").read_text())
    out = tmp_path / "elsewhere" / "served.onnx"
    out.parent.mkdir()
    result = run_export("--model", str(trained_net), "--format", "onnx", "--out", str(out),
                        "--data", str(real_sample_crops))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.with_suffix(".json").read_text()) == sidecar  # every key, the training record too
    # A sidecar edited to other class names is what the export then answers with.
    sidecar["class_names"] = ["no-mask", "mask"]
    out.with_suffix(".json").write_text(json.dumps(sidecar))
    assert load_classifier(out).class_names == ["no-mask", "mask"]


@pytest.mark.slow
def test_export_refuses_bad_command_lines_before_loading_anything(tmp_path):
    result = run_export("--model", str(tmp_path / "m.onnx"), "--format", "onnx")
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: --model")
    result = run_export("--model", str(tmp_path / "m.keras"), "--format", "tflite", "--out", str(tmp_path / "m.onnx"))
    assert result.returncode == 2 and "ends in .tflite" in result.stderr
    result = run_export("--model", str(tmp_path / "missing.keras"), "--format", "onnx")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: model file not found: {tmp_path / 'missing.keras'}"


@pytest.mark.slow
def test_export_without_test_crops_is_one_error_line_and_writes_nothing(trained_net, tmp_path):
    result = run_export("--model", str(trained_net), "--format", "onnx", "--data", str(tmp_path / "nowhere"),
                        "--out", str(tmp_path / "x.onnx"))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "nowhere/test: crop folder not found" in lines[0]
    assert list(tmp_path.iterdir()) == []


# --- files that are not classifiers ---------------------------------------------------------------

def foreign_onnx(path: Path) -> Path:
    """A valid ONNX model that is no classifier of ours: channels first, like CenterFace."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "foreign",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 32, 32])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_a_corrupt_file_is_one_value_error_naming_it(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x08\x07garbage, not a model" * 10)
    with pytest.raises(ValueError, match=rf"^{path}: not a readable (ONNX|TensorFlow Lite) model \(") as caught:
        load_classifier(path)
    assert "\n" not in str(caught.value)


def test_a_foreign_onnx_model_is_refused_with_its_input_shape(tmp_path):
    with pytest.raises(ValueError, match=r"input shape is \(1, 3, 32, 32\); a classifier here takes RGB images"):
        load_classifier(foreign_onnx(tmp_path / "foreign.onnx"))


@requires_shared
def test_a_foreign_tflite_model_is_refused_with_its_outputs(tmp_path):
    aizoo = SHARED.parent / "peers" / "aizoo" / "face_mask_detection.tflite"
    if not aizoo.is_file():
        pytest.skip(f"{aizoo} is absent")
    path = tmp_path / "detector.tflite"
    path.write_bytes(aizoo.read_bytes())
    with pytest.raises(ValueError, match=rf"^{path}: the model's outputs are \[\(1, 5972, 4\), \(1, 5972, 2\)\]"):
        load_classifier(path)


def test_a_truncated_export_and_a_wrong_suffix_are_value_errors(tmp_path):
    path = foreign_onnx(tmp_path / "cut.onnx")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=rf"^{path}: not a readable ONNX model"):
        load_classifier(path)
    with pytest.raises(ValueError, match=r"a model file ends in \.keras, \.onnx, \.tflite"):
        load_classifier(tmp_path / "model.h5")
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_classifier(tmp_path / "missing.onnx")
