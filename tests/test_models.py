"""The two classifiers: exact sizes, in-model preprocessing, fine-tuning switches, save/load."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from facemask import CLASS_NAMES
from facemask.models import (
    VGGPreprocess,
    build_scratch_cnn,
    build_vgg16,
    load_model,
    save_model,
    sidecar_path,
    unfreeze_vgg16,
    vgg16_base,
    vgg16_features,
    vgg16_head,
)

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


def test_vgg16_rejects_a_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_notop.h5"):
        build_vgg16(weights=str(tmp_path / "missing_notop.h5"))


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


@pytest.mark.parametrize("builder", [build_scratch_cnn, lambda: build_vgg16(weights=None)], ids=["scratch", "vgg16"])
def test_save_load_round_trip_gives_identical_predictions(builder, pixels, tmp_path):
    model = builder()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(pixels, keras.utils.to_categorical([0, 1, 0, 1], 2), epochs=1, verbose=0)  # optimizer state exists
    path = save_model(model, tmp_path / "models" / "m.keras", class_names=CLASS_NAMES)
    # Saved without Adam's moments: about 4 bytes per parameter, not 12.
    assert path.stat().st_size < 5 * model.count_params()
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
