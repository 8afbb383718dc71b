"""[P(mask), P(no-mask)] for face images, from a saved model.

    python -m facemask.predict models/scratch.keras face1.jpg face2.png

prints one tab-separated line per image, in the order given:

    face1.jpg	mask	P(mask)=0.9731	P(no-mask)=0.0269

Images are read in any mode (RGB, RGBA, grayscale, palette, 16-bit) with their EXIF orientation
applied, and classified in batches of `--batch-size`, so memory stays bounded however many files
are named. An image that cannot be read does not stop the others: its `error: <file>: <what>`
line goes to stderr, the readable images are still printed, and the exit status is 1. A missing
or unreadable model is an `error:` line and exit status 1 before any image is read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:  # keras is imported lazily so that `--help` and a missing model answer at once
    import keras

# 16-bit grayscale (e.g. medical or scientific PNGs): Pillow's convert("RGB") would clip it to white.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageReadError(ValueError):
    """An image file that cannot be read; the message names the file and what is wrong."""


def read_image(path: Path | str) -> Image.Image:
    """An RGB image with its EXIF orientation applied, or ImageReadError naming the file."""
    try:
        with Image.open(path) as opened:
            # Phones store portraits sideways plus an EXIF rotation flag; the model must see them upright.
            image = ImageOps.exif_transpose(opened)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        # Truncated or corrupt data, or a file too large to be a photo.
        raise ImageReadError(f"{path}: cannot decode the image ({error})") from None
    if image.mode in SIXTEEN_BIT_MODES:
        # Scale 0-65535 to 0-255, as TensorFlow's decoder does for the training images.
        values = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    # Alpha is dropped (not composited), as decode_image(channels=3) does in the training pipeline.
    return image if image.mode == "RGB" else image.convert("RGB")


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
    """One row [P(mask), P(no-mask)] per image, in a single batched pass through the model.

    `images` are PIL images or arrays of any size, or an array already shaped (n, height, width, 3)
    at the model's size, as `to_model_input` makes it, which is used as is.
    """
    if len(images) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    image_size = tuple(model.input_shape[1:3])
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1:] == (*image_size, 3):
        batch = images.astype(np.float32, copy=False)
    else:
        batch = to_model_input(images, image_size)
    return np.asarray(model.predict(batch, batch_size=batch_size, verbose=0), dtype=np.float32)


def predict_files(
    model: keras.Model, paths: Sequence[Path | str], batch_size: int = 32
) -> Iterator[tuple[Path | str, np.ndarray | ImageReadError]]:
    """(path, probabilities) for each file in order, or (path, ImageReadError) for an unreadable one.

    Files are read `batch_size` at a time and shrunk to the model's size as soon as they are
    decoded, so a folder of large photos never sits in memory at full resolution.
    """
    image_size = tuple(model.input_shape[1:3])
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        errors: list[ImageReadError | None] = []  # None where the image was read
        inputs = []
        for path in chunk:
            try:
                inputs.append(to_model_input([read_image(path)], image_size)[0])
                errors.append(None)
            except ImageReadError as error:
                errors.append(error)
        rows = iter(predict_proba(model, np.stack(inputs) if inputs else [], batch_size=batch_size))
        for path, error in zip(chunk, errors, strict=True):
            yield path, (next(rows) if error is None else error)


def format_prediction(name: str, probabilities: np.ndarray, class_names: Sequence[str]) -> str:
    """`face.jpg<TAB>mask<TAB>P(mask)=0.9731<TAB>P(no-mask)=0.0269`; ties go to the first class."""
    label = class_names[int(np.argmax(probabilities))]
    columns = [f"P({cls})={float(p):.4f}" for cls, p in zip(class_names, probabilities, strict=True)]
    return "\t".join([name, label, *columns])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facemask.predict",
        description="Print file, label, P(mask) and P(no-mask) for each face image, one line per image.",
    )
    parser.add_argument("model", help="a model saved by facemask (e.g. models/scratch.keras)")
    parser.add_argument("images", nargs="+", help="face crops (any format Pillow reads)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Answer a wrong model path at once, before paying for the TensorFlow import.
    if not Path(args.model).is_file():
        print(f"error: model file not found: {args.model}", file=sys.stderr)
        return 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from facemask.models import load_model

    try:
        model, class_names = load_model(args.model)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if model.output_shape[-1] != len(class_names):
        print(f"error: {args.model}: the model has {model.output_shape[-1]} outputs "
              f"but {len(class_names)} class names", file=sys.stderr)
        return 1
    failures = 0
    for path, outcome in predict_files(model, args.images, batch_size=args.batch_size):
        if isinstance(outcome, ImageReadError):
            failures += 1
            print(f"error: {outcome}", file=sys.stderr, flush=True)
        else:
            print(format_prediction(str(path), outcome, class_names), flush=True)
    if failures:
        print(f"error: {failures} of {len(args.images)} images could not be read", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
