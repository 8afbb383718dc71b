"""Augmentation: each layer changes training batches only, hue turns the whole circle, downscaling resizes as
serving does, and the recipe names are checked."""

from __future__ import annotations

import colorsys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from facemask.augment import AUGMENTATIONS, build_augmentation, downscale, jpeg, parse_augmentations
from facemask.data import load_datasets, load_split
from facemask.images import to_model_input

SIZE = (48, 48)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Small faces-like crops: smooth colour gradients with noise, 6 per class in train, 3 in valid and test."""
    root = tmp_path_factory.mktemp("augment") / "data"
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("valid", 3), ("test", 3)):
        for label in ("mask", "no-mask"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                ramp = np.linspace(40, 220, 40)[None, :, None] * np.array([0.9, 0.5, 0.3])
                noise = rng.uniform(-25, 25, (30, 40, 3))
                pixels = np.clip(ramp + noise + rng.uniform(-20, 20, 3), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{label}-{i}.png")
    return root


def all_images(dataset) -> np.ndarray:
    return np.concatenate([batch[0].numpy() for batch in dataset])


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_each_augmentation_changes_training_batches_only(data_dir, name):
    keras.utils.set_random_seed(0)
    plain = all_images(load_split(data_dir / "train", batch_size=12, image_size=SIZE))
    training = load_split(data_dir / "train", batch_size=12, image_size=SIZE, augment=True, augmentations=[name],
                          seed=1)
    # Some images change within a few passes: the occasional augmentations (grayscale touches 1 face in 10)
    # can leave all 12 alone in one pass.
    for _ in range(5):
        augmented = all_images(training)
        assert augmented.shape == plain.shape and augmented.dtype == np.float32
        assert augmented.min() >= 0 and augmented.max() <= 255
        if any(not np.array_equal(a, b) for a, b in zip(augmented, plain, strict=True)):
            break
    else:
        pytest.fail(f"{name} changed no training image in 5 passes")
    # Validation and test (what serving sees) come back pixel-identical whatever the training recipe.
    datasets = load_datasets(data_dir, batch_size=12, image_size=SIZE, augment=True, augmentations=[name])
    for split in ("valid", "test"):
        served = to_model_input([Image.open(p) for p in sorted((data_dir / split).glob("*/*.png"))], SIZE)
        np.testing.assert_array_equal(all_images(datasets[split]), served)


def test_augmentation_layers_leave_images_alone_outside_training():
    images = np.random.default_rng(2).uniform(0, 255, (4, *SIZE, 3)).astype(np.float32)
    augmentation = build_augmentation(AUGMENTATIONS, seed=0)
    np.testing.assert_array_equal(np.asarray(augmentation(images, training=False)), images)


def hues(images: np.ndarray) -> np.ndarray:
    """The hue (0-1) of the mean colour of each image."""
    return np.array([colorsys.rgb_to_hsv(*(image.mean(axis=(0, 1)) / 255))[0] for image in images])


def test_hue_rotation_turns_a_red_mask_into_other_colours():
    red = np.zeros((64, 8, 8, 3), dtype=np.float32)
    red[...] = (200, 30, 30)
    layer = build_augmentation(["hue"], seed=3)
    turned = np.asarray(layer(red, training=True))
    changed = ~np.all(np.isclose(turned, red, atol=1), axis=(1, 2, 3))
    # About half the faces are turned (HALF), each by an angle anywhere on the circle.
    assert 16 <= changed.sum() <= 48
    angles = hues(turned[changed])
    assert np.histogram(angles, bins=4, range=(0, 1))[0].min() >= 2, angles  # every quarter of the circle
    # Saturation and brightness stay: the colour is the only thing that moves.
    hsv = np.array([colorsys.rgb_to_hsv(*(image[0, 0] / 255)) for image in turned[changed]])
    np.testing.assert_allclose(hsv[:, 1], 170 / 200, atol=0.02)
    np.testing.assert_allclose(hsv[:, 2], 200 / 255, atol=0.02)


def test_downscale_resizes_back_as_serving_resizes_a_small_face():
    face = np.random.default_rng(4).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    out = downscale(face, draw=0.0)  # the smallest: 8 px on its shorter side
    small = Image.fromarray(face).resize((8, 8), Image.BILINEAR)
    np.testing.assert_array_equal(out, to_model_input([small], (96, 96))[0])  # serving's resize, exactly
    assert out.shape == (96, 96, 3) and out.dtype == np.float32
    assert not np.array_equal(out, face)
    np.testing.assert_array_equal(downscale(face, 1.0), to_model_input([Image.fromarray(face).resize(
        (32, 32), Image.BILINEAR)], (96, 96))[0])


def test_jpeg_compresses_and_keeps_the_size():
    face = np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    worst, best = jpeg(face, 0.0), jpeg(face, 1.0)
    assert worst.shape == face.shape and worst.dtype == np.float32
    assert np.abs(worst - face).mean() > np.abs(best - face).mean() > 0


def test_recipe_names_are_parsed_in_a_fixed_order():
    assert parse_augmentations("hue, FLIP,downscale") == ("flip", "hue", "downscale")
    assert parse_augmentations("none") == parse_augmentations("") == ()
    with pytest.raises(ValueError, match="unknown augmentation sepia"):
        parse_augmentations("flip,sepia")


def test_each_layer_of_a_recipe_draws_its_own_numbers():
    # One bright dot left of centre: a flip moves it right, a rotation moves it up or down. Layers seeded
    # alike drew the same numbers, so flipped faces were nearly always rotated one way (correlation -0.88).
    images = np.zeros((256, 64, 64, 3), "float32")
    images[:, 30:34, 20:24] = 255
    flip, rotation = build_augmentation(["flip", "rotation"], seed=0).layers
    flipped = flip(images, training=True).numpy()[..., 0]
    rotated = rotation(images, training=True).numpy()[..., 0]
    went_right = (flipped.sum(1) * np.arange(64)).sum(1) / flipped.sum((1, 2)) > 32
    height = (rotated.sum(2) * np.arange(64)).sum(1) / rotated.sum((1, 2))
    assert 0.3 < went_right.mean() < 0.7 and np.ptp(height) > 2
    assert abs(np.corrcoef(went_right, height)[0, 1]) < 0.3
