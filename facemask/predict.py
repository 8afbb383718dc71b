"""[P(mask), P(no-mask)] for face images, from a saved model.

    python -m facemask.predict models/scratch.keras face1.jpg face2.png

prints one tab-separated line per image, in the order given:

    face1.jpg	mask	P(mask)=0.9731	P(no-mask)=0.0269

Images are read in any mode (RGB, RGBA flattened onto white, grey, palette, 16-bit) with their EXIF orientation
applied, and classified in batches of `--batch-size`, so memory stays bounded however many files
are named. An image that cannot be read does not stop the others: its `error: <file>: <what>`
line goes to stderr, the readable images are still printed, and the exit status is 1. A missing
or unreadable model is an `error:` line and exit status 1 before any image is read.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:  # keras is imported lazily so that `--help` and a missing model answer at once
    import keras


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and what is wrong."""


def load_image(source: str | Path | bytes | BinaryIO, max_pixels: int = 40_000_000,
               name: str | None = None) -> Image.Image:
    """Open, check and fully decode an image, upright (EXIF orientation applied) and in RGB.

    The one reader of every image the project classifies - crops, photos, uploads - so all of them
    get the same checks: `source` is a path, the file's bytes or an open file; `name` is what error
    messages call it. Raises ImageError for a missing, non-image, truncated or oversized file.
    """
    if name is None:
        name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "<uploaded image>")
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; make the warning an error too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(stream)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError(f"{name}: refused as a possible decompression bomb ({error})") from error
        except FileNotFoundError as error:
            raise ImageError(f"{name}: file not found") from error
        except IsADirectoryError as error:
            raise ImageError(f"{name}: is a folder, not an image") from error
        except Image.UnidentifiedImageError as error:
            raise ImageError(f"{name}: not an image (no format Pillow can read)") from error
        except PermissionError as error:
            raise ImageError(f"{name}: cannot be read (permission denied)") from error
        except OSError as error:  # a header cut short, or bytes that only start like an image
            raise ImageError(f"{name}: damaged or truncated image data ({error})") from error
        with image:  # closes the file once decoded, or when refused
            # The header gives the size before any pixel is decoded: refuse huge images here.
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"{name}: {width}x{height} is {width * height:,} pixels, "
                                 f"over the {max_pixels:,} limit")
            if width == 0 or height == 0:
                raise ImageError(f"{name}: the image is empty ({width}x{height})")
            try:
                image.load()  # decode now, so a truncated file fails here and not later
                upright = ImageOps.exif_transpose(image)
            except Exception as error:  # Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error...
                problem = f"{type(error).__name__}: {error}"
                raise ImageError(f"{name}: damaged or truncated image data ({problem})") from error
            return to_rgb(upright, name)


def to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Any Pillow mode to RGB; transparency is flattened onto white, 16-bit grey scaled to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # Pillow's own I;16 -> RGB conversion clips at 255 instead of scaling down.
        grey = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or grey.max() > 255:
            grey = grey / 257.0
        return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise ImageError(f"{name}: colour mode {image.mode} cannot be converted to RGB") from error


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
    """One row [P(mask), P(no-mask)] per image, `batch_size` images per model call.

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
    # predict_on_batch, not predict: predict builds a tf.data pipeline and a progress loop on every
    # call, which for the few faces of one video frame costs more than the network itself (~3x).
    chunks = [model.predict_on_batch(batch[start:start + batch_size]) for start in range(0, len(batch), batch_size)]
    return np.concatenate([np.asarray(chunk, dtype=np.float32) for chunk in chunks])


def predict_files(
    model: keras.Model, paths: Sequence[Path | str], batch_size: int = 32
) -> Iterator[tuple[Path | str, np.ndarray | ImageError]]:
    """(path, probabilities) for each file in order, or (path, ImageError) for an unreadable one.

    Files are read `batch_size` at a time and shrunk to the model's size as soon as they are
    decoded, so a folder of large photos never sits in memory at full resolution.
    """
    image_size = tuple(model.input_shape[1:3])
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
        if isinstance(outcome, ImageError):
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
