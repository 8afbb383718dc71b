"""[P(mask), P(no-mask)] for face images, from a saved model.

    python -m facemask.predict models/scratch.keras face1.jpg face2.png
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from PIL import Image


def to_model_input(images: Sequence[Image.Image | np.ndarray], image_size: tuple[int, int]) -> np.ndarray:
    """Stack images as float32 RGB 0-255 at the model's size; the model does its own scaling."""
    batch = np.empty((len(images), *image_size, 3), dtype=np.float32)
    for i, image in enumerate(images):
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image.astype(np.uint8))
        # Bilinear, as image_dataset_from_directory resizes the training crops.
        image = image.convert("RGB").resize((image_size[1], image_size[0]), Image.BILINEAR)
        batch[i] = np.asarray(image, dtype=np.float32)
    return batch


def predict_proba(model: keras.Model, images: Sequence[Image.Image | np.ndarray], batch_size: int = 32) -> np.ndarray:
    """One row [P(mask), P(no-mask)] per image, in a single batched pass through the model."""
    if len(images) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    batch = to_model_input(images, tuple(model.input_shape[1:3]))
    return np.asarray(model.predict(batch, batch_size=batch_size, verbose=0), dtype=np.float32)
