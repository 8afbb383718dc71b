"""Training augmentation: Keras preprocessing layers the `tf.data` pipeline applies to training batches only.

Each augmentation has a name, so a recipe is a list of names (`--augment flip,rotation,shift`):

- flip, rotation, shift: the original project's `ImageDataGenerator` recipe (horizontal flip, rotation up to 40
  degrees, shifts up to 10%, corners filled by repeating the edge);
- hue, saturation, brightness, contrast, grayscale: colour. The Kaggle training faces wear mostly white
  and blue surgical masks, so a model can learn "colourful lower face" as "skin"; a hue rotation over
  the whole circle (on half the faces) shows it red, yellow, green and pink masks;
- downscale: half the faces shrunk to the sizes faces really have in photos (8-32 px on the shorter
  side) and brought back up by `facemask.images.to_model_input`, the resize serving uses, so a small
  face looks in training as it will when served;
- blur, jpeg: a Gaussian blur, and JPEG compression at a quality from 20 to 90 (Pillow's encoder).

Which of them the default recipe keeps was decided on the validation parts of cross-validation folds
grouped by photo (bench/crossval.py, bench/README.md). None of these layers is ever part of a saved
model: serving and evaluation see the pixels as they are. Pixels stay float32 in 0-255.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from facemask.images import to_model_input

# The original project's ImageDataGenerator(rotation_range=40, width_shift_range=0.1, height_shift_range=0.1,
# horizontal_flip=True); RandomRotation takes a fraction of a full turn.
ROTATION_DEGREES = 40
SHIFT_FRACTION = 0.1
DOWNSCALE_SIDES = (8, 32)  # the shorter side, in px, a downscaled face is given (the Kaggle median is about 22)
JPEG_QUALITIES = (20, 90)
HALF = 0.5  # the share of faces the hue, downscale and JPEG augmentations touch: the rest stay as photographed

AUGMENTATIONS = ("flip", "rotation", "shift", "hue", "saturation", "brightness", "contrast", "grayscale",
                 "downscale", "blur", "jpeg")
ORIGINAL_AUGMENTATIONS = ("flip", "rotation", "shift")


def parse_augmentations(text: str) -> tuple[str, ...]:
    """`flip,rotation,hue` to its names in AUGMENTATIONS order; "none" (or nothing) is no augmentation.

    ValueError names an unknown one. The order of application is AUGMENTATIONS', whatever the text's.
    """
    names = {name.strip().lower() for name in str(text).split(",")} - {"", "none"}
    unknown = sorted(names - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)} "
                         "(comma-separated), or none")
    return tuple(name for name in AUGMENTATIONS if name in names)


def augmentation_text(names: Sequence[str]) -> str:
    """The names as the option takes them: `flip,rotation,shift`, or `none`."""
    return ",".join(names) or "none"


class _PerImage(keras.layers.Layer):
    """A random transformation drawn per image (seeded), applied with probability `rate`; identity at inference.

    Subclasses give `transform(images, draws)` in TensorFlow, `draws` being one uniform number in [0, 1)
    per image; images untouched by the draw of `rate` come back exactly as they went in.
    """

    def __init__(self, rate: float = HALF, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        batch = tf.shape(images)[0]
        chosen = keras.random.uniform((batch,), seed=self.generator) < self.rate
        draws = keras.random.uniform((batch,), seed=self.generator)
        changed = self.transform(images, draws)
        return tf.where(chosen[:, None, None, None], changed, images)

    def transform(self, images, draws):
        raise NotImplementedError

    def get_config(self):
        return super().get_config() | {"rate": self.rate, "seed": self.seed}


def _on_pillow(function, images, draws):
    """Run `function(image uint8 (h, w, 3), draw) -> float32 image` on every image in Python (Pillow)."""
    def apply(batch: np.ndarray, numbers: np.ndarray) -> np.ndarray:
        pixels = np.clip(np.rint(batch), 0, 255).astype(np.uint8)
        return np.stack([function(image, float(draw)) for image, draw in zip(pixels, numbers, strict=True)])

    out = tf.numpy_function(apply, [images, draws], tf.float32, stateful=False)
    return tf.ensure_shape(out, images.shape)


def downscale(image: np.ndarray, draw: float) -> np.ndarray:
    """The face as if photographed small: its shorter side shrunk to 8-32 px (Pillow's antialiased
    bilinear), then brought back to its size by `to_model_input`, the resize serving uses."""
    height, width = image.shape[:2]
    low, high = DOWNSCALE_SIDES
    side = low + draw * (high - low)
    scale = min(1.0, side / min(height, width))
    small = Image.fromarray(image).resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                          Image.BILINEAR)
    return to_model_input([small], (height, width))[0]


def jpeg(image: np.ndarray, draw: float) -> np.ndarray:
    """The face saved as a JPEG of quality 20-90 and decoded again."""
    low, high = JPEG_QUALITIES
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(round(low + draw * (high - low))))
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32)


@keras.saving.register_keras_serializable(package="facemask")
class RandomDownscale(_PerImage):
    """Shrink a face to 8-32 px and resize it back as serving resizes a small face (see `downscale`)."""

    def transform(self, images, draws):
        return _on_pillow(downscale, images, draws)


@keras.saving.register_keras_serializable(package="facemask")
class RandomJpegQuality(_PerImage):
    """JPEG compression at a random quality from 20 to 90 (see `jpeg`)."""

    def transform(self, images, draws):
        return _on_pillow(jpeg, images, draws)


@keras.saving.register_keras_serializable(package="facemask")
class RandomHueRotation(_PerImage):
    """The hue turned by a random angle anywhere on the whole circle; saturation and value kept."""

    def transform(self, images, draws):
        hsv = tf.image.rgb_to_hsv(images / 255.0)
        hue = tf.math.floormod(hsv[..., 0] + draws[:, None, None], 1.0)
        rgb = tf.image.hsv_to_rgb(tf.stack([hue, hsv[..., 1], hsv[..., 2]], axis=-1))
        return tf.clip_by_value(rgb * 255.0, 0.0, 255.0)


@keras.saving.register_keras_serializable(package="facemask")
class RandomSaturationScale(_PerImage):
    """Saturation multiplied by 0.4-1.6 (clipped to 1): paler and more vivid masks and skins."""

    def transform(self, images, draws):
        hsv = tf.image.rgb_to_hsv(images / 255.0)
        saturation = tf.clip_by_value(hsv[..., 1] * (0.4 + 1.2 * draws[:, None, None]), 0.0, 1.0)
        rgb = tf.image.hsv_to_rgb(tf.stack([hsv[..., 0], saturation, hsv[..., 2]], axis=-1))
        return tf.clip_by_value(rgb * 255.0, 0.0, 255.0)


def _layer(name: str, seed: int | None) -> keras.layers.Layer:
    """One augmentation by name, float32 even under a mixed-precision policy."""
    value_range = (0, 255)
    layers = {
        "flip": lambda: keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32"),
        "rotation": lambda: keras.layers.RandomRotation(ROTATION_DEGREES / 360, fill_mode="nearest", seed=seed,
                                                        dtype="float32"),
        "shift": lambda: keras.layers.RandomTranslation(SHIFT_FRACTION, SHIFT_FRACTION, fill_mode="nearest",
                                                        seed=seed, dtype="float32"),
        "hue": lambda: RandomHueRotation(HALF, seed=seed, dtype="float32"),
        "saturation": lambda: RandomSaturationScale(1.0, seed=seed, dtype="float32"),
        "brightness": lambda: keras.layers.RandomBrightness(0.2, value_range=value_range, seed=seed, dtype="float32"),
        "contrast": lambda: keras.layers.RandomContrast(0.3, value_range=value_range, seed=seed, dtype="float32"),
        "grayscale": lambda: keras.layers.RandomGrayscale(0.1, seed=seed, dtype="float32"),
        "downscale": lambda: RandomDownscale(HALF, seed=seed, dtype="float32"),
        "blur": lambda: keras.layers.RandomGaussianBlur(0.3, kernel_size=5, sigma=(0.3, 1.5), value_range=value_range,
                                                        seed=seed, dtype="float32"),
        "jpeg": lambda: RandomJpegQuality(HALF, seed=seed, dtype="float32"),
    }
    return layers[name]()


def build_augmentation(names: Sequence[str] = ORIGINAL_AUGMENTATIONS, seed: int | None = 0) -> keras.Sequential:
    """The named augmentations as one Sequential, in AUGMENTATIONS order (geometry, colour, then resolution).

    Each layer gets a seed of its own (`seed` plus its place in AUGMENTATIONS): layers given one seed draw
    the same numbers, so every flipped face would also be rotated the same way (correlation -0.88).
    """
    ordered = parse_augmentations(",".join(names))
    layers = [_layer(name, None if seed is None else seed + AUGMENTATIONS.index(name)) for name in ordered]
    return keras.Sequential(layers or [keras.layers.Identity()], name="augmentation")
