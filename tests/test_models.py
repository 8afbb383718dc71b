"""The two classifiers: exact sizes, in-model preprocessing, fine-tuning switches, save/load."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from facemask import CLASS_NAMES, DEFAULT_MARGIN
from facemask.models import (
    VGGPreprocess,
    WeightsUnavailable,
    build_compact,
    build_scratch_cnn,
    build_vgg16,
    load_model,
    multiply_adds,
    save_model,
    unfreeze_vgg16,
    vgg16_base,
    vgg16_features,
    vgg16_head,
)
from facemask.sidecar import crop_margin, decision_threshold, read_sidecar, sidecar_path

SMALL = (32, 32)  # VGG16's smallest input: the structure is the same, the tests run in seconds


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (4, 224, 224, 3)).astype(np.float32)


def test_scratch_cnn_has_the_exact_parameter_count():
    model = build_scratch_cnn()
    assert model.count_params() == 12_874_466
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, len(CLASS_NAMES))


def test_vgg16_has_the_exact_parameter_count_and_starts_frozen():
    model = build_vgg16(weights=None)
    assert model.count_params() == 21_137_986
    assert model.output_shape == (None, 2)
    assert not vgg16_base(model).trainable
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 21_137_986 - 14_714_688  # only the head; VGG16's base holds 14,714,688


def test_compact_network_is_small_takes_faces_at_96_px_and_costs_a_tenth_of_the_scratch_cnn():
    model = build_compact()
    assert model.count_params() == 142_850 and model.count_params() < 1_000_000
    assert model.input_shape == (None, 96, 96, 3) and model.output_shape == (None, len(CLASS_NAMES))
    assert build_compact((64, 64)).input_shape == (None, 64, 64, 3)
    assert build_compact((64, 64)).count_params() == 142_850  # global average pooling: any size, same weights
    # Multiply-adds per face: the scratch CNN's three convolutions and two dense layers, by hand.
    scratch = 224 * 224 * 27 * 32 + 112 * 112 * 288 * 32 + 56 * 56 * 288 * 64 + 50_176 * 256 + 256 * 2
    assert multiply_adds(build_scratch_cnn()) == scratch == 229_605_888
    assert multiply_adds(model) == 13_478_912 < scratch / 10
    # Standard layers only (what ONNX and TFLite converters know), raw 0-255 pixels in, and no augmentation.
    kinds = {type(layer).__name__ for layer in model.layers}
    assert kinds == {"InputLayer", "Rescaling", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add",
                     "GlobalAveragePooling2D", "Dropout", "Dense"}
    assert model.get_layer("probabilities").dtype_policy.name == "float32"


def test_vgg16_rejects_a_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_notop.h5"):
        build_vgg16(weights=str(tmp_path / "missing_notop.h5"))


def test_imagenet_weights_that_cannot_be_downloaded_say_what_to_do(monkeypatch):
    """keras.utils.get_file fails a download with a bare Exception; build_vgg16 makes it one clear
    message (the train command prints it as its `error:` line; tests/test_train.py runs that offline)."""
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x_notop.h5: None -- [Errno 111] refused")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.raises(WeightsUnavailable) as raised:
        build_vgg16(weights="imagenet", image_size=SMALL)
    message = str(raised.value)
    assert message.startswith("VGG16's ImageNet weights could not be downloaded (URL fetch failure on https://")
    assert "\n" not in message and "WEIGHTS = None" in message and "--weights none" in message
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message and "not a result" in message
    # IPython shows what _render_traceback_ returns instead of a traceback: in a notebook, that one line.
    assert raised.value._render_traceback_() == [f"WeightsUnavailable: {message}"]
    # Any other failure is not mistaken for a missing download.
    monkeypatch.setattr(keras.applications, "VGG16", lambda **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        build_vgg16(weights="imagenet", image_size=SMALL)


def test_vgg_preprocess_matches_keras_preprocess_input(pixels):
    expected = keras.applications.vgg16.preprocess_input(pixels.copy())
    np.testing.assert_allclose(np.asarray(VGGPreprocess()(pixels)), expected, atol=1e-4)


def test_outputs_are_probabilities(pixels):
    probabilities = build_scratch_cnn().predict(pixels, verbose=0)
    assert probabilities.shape == (4, 2) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize(("from_block", "first_open"), [("block5", "block5"), ("block3", "block3"), (None, "block1")])
def test_unfreeze_opens_the_base_from_a_block(from_block, first_open):
    model = build_vgg16(weights=None, image_size=SMALL)
    opened = unfreeze_vgg16(model, from_block)
    blocks = [f"block{i}" for i in range(1, 6)]
    open_blocks = blocks[blocks.index(first_open):]
    for layer in vgg16_base(model).layers:
        if layer.weights:
            assert layer.trainable == layer.name.startswith(tuple(open_blocks)), layer.name
    assert opened and all(name.startswith(tuple(open_blocks)) for name in opened)
    assert all(model.get_layer(name).trainable for name in ("head_dense", "probabilities"))


def test_unfreeze_rejects_an_unknown_block():
    with pytest.raises(ValueError, match="block6"):
        unfreeze_vgg16(build_vgg16(weights=None, image_size=SMALL), "block6")


@pytest.mark.slow
def test_head_model_shares_weights_with_the_full_model():
    model = build_vgg16(weights=None, image_size=SMALL)
    images = np.random.default_rng(1).uniform(0, 255, (8, *SMALL, 3)).astype(np.float32)
    labels = keras.utils.to_categorical(np.arange(8) % 2, 2)
    features = vgg16_features(model).predict(images, verbose=0)
    assert features.shape == (8, 1, 1, 512)
    head = vgg16_head(model)
    head.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    before = model.predict(images, verbose=0)
    base_before = [w.copy() for w in vgg16_base(model).get_weights()]
    head.fit(features, labels, epochs=2, verbose=0)
    # Training the head on features moved the full model's output, and left the base alone.
    assert not np.allclose(model.predict(images, verbose=0), before)
    np.testing.assert_allclose(head.predict(features, verbose=0), model.predict(images, verbose=0), atol=1e-5)
    for old, new in zip(base_before, vgg16_base(model).get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


@pytest.mark.slow
@pytest.mark.parametrize("builder", [build_scratch_cnn, lambda: build_vgg16(weights=None), build_compact],
                         ids=["scratch", "vgg16", "compact"])
def test_save_load_round_trip_gives_identical_predictions(builder, pixels, tmp_path):
    model = builder()
    pixels = keras.ops.convert_to_numpy(keras.ops.image.resize(pixels, model.input_shape[1:3]))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(pixels, keras.utils.to_categorical([0, 1, 0, 1], 2), epochs=1, verbose=0)  # optimizer state exists
    path = save_model(model, tmp_path / "models" / "m.keras", class_names=CLASS_NAMES)
    # Saved without Adam's moments: about 4 bytes per parameter, not 12 (plus the layers' description).
    assert path.stat().st_size < 5 * model.count_params() + 100_000
    assert json.loads(sidecar_path(path).read_text())["class_names"] == CLASS_NAMES
    loaded, class_names = load_model(path)
    assert class_names == CLASS_NAMES and loaded.count_params() == model.count_params()
    np.testing.assert_array_equal(loaded.predict(pixels, verbose=0), model.predict(pixels, verbose=0))


def test_load_model_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.keras"):
        load_model(tmp_path / "nothing.keras")
    (tmp_path / "junk.keras").write_text("not a model")
    with pytest.raises(ValueError, match="junk.keras"):
        load_model(tmp_path / "junk.keras")
    with pytest.raises(ValueError, match=".keras"):
        save_model(build_scratch_cnn(), tmp_path / "model.h5")


# --- sidecars and input shapes that the commands must refuse with one `error:` line ---------------

def build_tiny(shape: tuple = (16, 16, 3), outputs: int = 2) -> keras.Model:
    inputs = keras.Input(shape=shape)
    return keras.Model(inputs, keras.layers.Dense(outputs, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(inputs)))


@pytest.fixture(scope="module")
def tiny_saved(tmp_path_factory):
    """A small model saved with its sidecar, and a copy of the .keras file in a folder of its own."""
    return save_model(build_tiny(), tmp_path_factory.mktemp("tiny") / "tiny.keras")


BAD_SIDECARS = {
    "corrupt": ('{"class_names": ["mask", "no-', "not valid JSON"),
    "list": ('["mask", "no-mask"]', "must be a JSON object, not [\"mask\", \"no-mask\"]"),
    "no class_names": ('{"image_size": [16, 16]}', "has no 'class_names'"),
    "class_names a string": ('{"class_names": "mask,no-mask"}', "'class_names' must be a list"),
    "one class": ('{"class_names": ["mask"]}', "'class_names' must be a list"),
    "repeated class": ('{"class_names": ["mask", "mask"]}', "'class_names' must be a list"),
    "tab in a class": ('{"class_names": ["mask", "no\\tmask"]}', "'class_names' must be a list"),
    "image_size not a pair": ('{"class_names": ["mask", "no-mask"], "image_size": 224}', "'image_size' must be"),
    "image_size of zero": ('{"class_names": ["mask", "no-mask"], "image_size": [0, 16]}', "'image_size' must be"),
    "image_size of floats": ('{"class_names": ["mask", "no-mask"], "image_size": [16.0, 16]}', "'image_size' must be"),
    "image_size not the model's": ('{"class_names": ["mask", "no-mask"], "image_size": [224, 224]}',
                                   "'image_size' is [224, 224] but the model"),
    "not UTF-8": (b'{"class_names": ["m\xe4sk", "no-mask"]}', "cannot read the model's sidecar"),
    "training not an object": ('{"class_names": ["mask", "no-mask"], "training": "vgg16"}',
                               "'training' must be an object"),
    "threshold above 1": ('{"class_names": ["mask", "no-mask"], "no_mask_threshold": 1.5}',
                          "'no_mask_threshold' must be a probability from 0 to 1, not 1.5"),
    "threshold a string": ('{"class_names": ["mask", "no-mask"], "no_mask_threshold": "0.3"}',
                           "'no_mask_threshold' must be a probability"),
    "threshold NaN": ('{"class_names": ["mask", "no-mask"], "no_mask_threshold": NaN}',
                      "'no_mask_threshold' must be a probability"),
    "margin negative": ('{"class_names": ["mask", "no-mask"], "margin": -0.1}',
                        "'margin' must be a fraction of the face box from 0 to 10, not -0.1"),
    "margin a string": ('{"class_names": ["mask", "no-mask"], "margin": "0.1"}', "'margin' must be a fraction"),
}


@pytest.fixture(params=sorted(BAD_SIDECARS))
def bad_sidecar(request, tiny_saved, tmp_path):
    """The tiny model beside one bad sidecar; (model path, sidecar path, expected words)."""
    text, expected = BAD_SIDECARS[request.param]
    model = tmp_path / "model.keras"
    model.write_bytes(tiny_saved.read_bytes())
    sidecar = sidecar_path(model)
    sidecar.write_bytes(text if isinstance(text, bytes) else text.encode())
    return model, sidecar, expected


def test_read_sidecar_accepts_what_save_model_writes(tiny_saved):
    assert read_sidecar(sidecar_path(tiny_saved)) == {"class_names": CLASS_NAMES, "image_size": (16, 16)}


def test_the_sidecar_keeps_how_the_model_was_trained(tmp_path):
    # Written by training (see test_train.py); a sidecar without it, from an older model, still reads (above).
    training = {"config": {"arch": "scratch", "seed": 42}, "versions": {"keras": keras.__version__}}
    path = save_model(build_tiny(), tmp_path / "tiny.keras", training=training)
    assert read_sidecar(sidecar_path(path)) == {"class_names": CLASS_NAMES, "image_size": (16, 16),
                                                "training": training}


def test_the_decision_threshold_round_trips_through_the_sidecar(tmp_path, tiny_saved):
    path = save_model(build_tiny(), tmp_path / "tiny.keras", no_mask_threshold=0.237)
    assert read_sidecar(sidecar_path(path))["no_mask_threshold"] == 0.237
    assert decision_threshold(path) == 0.237
    # A model saved before thresholds were chosen (no key), or without any sidecar, is served at 0.5.
    assert "no_mask_threshold" not in read_sidecar(sidecar_path(tiny_saved)) and decision_threshold(tiny_saved) == 0.5
    bare = tmp_path / "bare.keras"
    bare.write_bytes(tiny_saved.read_bytes())
    assert decision_threshold(bare) == 0.5
    with pytest.raises(ValueError, match="from 0 to 1"):
        save_model(build_tiny(), tmp_path / "bad.keras", no_mask_threshold=1.2)
    assert not (tmp_path / "bad.keras").exists()
    # Written through temporary files: nothing else is left beside the two.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.keras", "tiny.json", "tiny.keras"]


def test_the_crop_margin_round_trips_through_the_sidecar(tmp_path, tiny_saved):
    path = save_model(build_tiny(), tmp_path / "tiny.keras", margin=0.25)
    assert read_sidecar(sidecar_path(path))["margin"] == 0.25 and crop_margin(path) == 0.25
    # A model saved before margins were recorded, or without any sidecar, is served at the default margin.
    assert "margin" not in read_sidecar(sidecar_path(tiny_saved)) and crop_margin(tiny_saved) == DEFAULT_MARGIN
    bare = tmp_path / "bare.keras"
    bare.write_bytes(tiny_saved.read_bytes())
    assert crop_margin(bare) == DEFAULT_MARGIN
    with pytest.raises(ValueError, match="crop margin is a fraction from 0 to 10"):
        save_model(build_tiny(), tmp_path / "bad.keras", margin=-1)
    assert not (tmp_path / "bad.keras").exists()


def test_bad_sidecar_is_a_value_error_naming_the_sidecar(bad_sidecar):
    model, sidecar, expected = bad_sidecar
    with pytest.raises(ValueError) as caught:
        load_model(model)
    assert str(caught.value).startswith(f"{sidecar}: ") and expected in str(caught.value)


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_predict_and_detect_print_one_error_line_for_a_bad_sidecar(bad_sidecar, tmp_path, astronaut, capsys):
    from facemask import detect, predict

    model, sidecar, expected = bad_sidecar
    astronaut.save(tmp_path / "face.png")
    assert predict.main(["--model", str(model), str(tmp_path / "face.png")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = error_lines(captured.err)
    assert line.startswith(f"error: {sidecar}: ") and expected in line
    # detect answers a bad model with exit status 1 (a runtime error), before looking at any photo.
    assert detect.main(["--model", str(model), str(tmp_path / "face.png"), "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    (line,) = error_lines(captured.err)
    assert line.startswith(f"error: {sidecar}: ") and expected in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("shape", "outputs", "expected"), [
    ((None, None, 3), 2, "input shape is (None, None, None, 3)"),
    ((16, 16, 1), 2, "input shape is (None, 16, 16, 1)"),
    ((16, 16, 3), 3, "output shape is (None, 3)"),
])
def test_a_model_without_fixed_rgb_input_or_with_the_wrong_outputs_is_refused(shape, outputs, expected, tmp_path,
                                                                              astronaut, capsys):
    from facemask import detect, predict

    model = tmp_path / "open.keras"
    save_model(build_tiny(shape, outputs), model)
    sidecar_path(model).unlink()  # the sidecar save_model writes for such a model is not what is tested
    with pytest.raises(ValueError, match=r"open\.keras: the model's") as caught:
        load_model(model)
    assert expected in str(caught.value)
    astronaut.save(tmp_path / "face.png")
    assert predict.main(["--model", str(model), str(tmp_path / "face.png")]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"error: {model}: the model's") and expected in line
    assert detect.main(["--model", str(model), str(tmp_path / "face.png"), "--out", str(tmp_path / "out")]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"error: {model}: the model's") and expected in line


def test_a_missing_sidecar_means_the_projects_class_names(tiny_saved, tmp_path):
    model = tmp_path / "bare.keras"
    model.write_bytes(tiny_saved.read_bytes())
    assert load_model(model)[1] == CLASS_NAMES
