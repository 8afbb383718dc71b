"""Images in, faces out: the one place that reads images, cuts faces and sizes them for a model.

Every image the project touches - the photos `split.py` cuts, the crops training reads, the
photos and uploads detection reads - goes through `load_image`, so all of them get the same
checks (missing, not a regular file, not an image, truncated, decompression bomb, too many pixels) and the same
decoding (EXIF orientation applied, any mode to RGB, transparency on white, 16-bit scaled down).
Training and serving cut a face the same way (`crop_face`, one default margin) and resize it the
same way (`to_model_input`), so the classifier sees at run time the face it learned from.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from facemask import DEFAULT_MARGIN, not_a_regular_file

# The photo's pixels the web app and the commands accept; the header tells the size before decoding.
MAX_PIXELS = 40_000_000
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in whole pixels (x1, y1 exclusive)
EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 or 270 degrees


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and what is wrong."""


def _source_name(source: str | Path | bytes | BinaryIO, name: str | None) -> str:
    if name is not None:
        return name
    return str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "<uploaded image>")


@contextlib.contextmanager
def _opened(source: str | Path | bytes | BinaryIO, max_pixels: int, name: str) -> Iterator[Image.Image]:
    """The image opened lazily (header only), refused if missing, not an image or too big; closed after."""
    if isinstance(source, (str, Path)) and (problem := not_a_regular_file(source)):
        raise ImageError(f"{name}: {problem}")  # before Pillow opens it: a FIFO would block the open forever
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
        except MemoryError:
            raise  # the machine is short of memory, not the file wrong: do not blame the file
        except Exception as error:
            # A header cut short or bytes that only start like an image: Pillow's format plugins
            # raise OSError, ValueError (`P6` alone: "Reached EOF while reading header"),
            # SyntaxError, EOFError, struct.error... The promise is one ImageError per bad file.
            raise ImageError(f"{name}: damaged or truncated image data ({_describe(error)})") from error
        with image:  # closes the file once used, or when refused
            # The header gives the size before any pixel is decoded: refuse huge images here.
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"{name}: {width}x{height} is {width * height:,} pixels, "
                                 f"over the {max_pixels:,} limit")
            if width <= 0 or height <= 0:
                raise ImageError(f"{name}: the image is empty ({width}x{height})")
            yield image


def load_image(source: str | Path | bytes | BinaryIO, max_pixels: int = MAX_PIXELS,
               name: str | None = None) -> Image.Image:
    """Open, check and fully decode an image, upright (EXIF orientation applied) and in RGB.

    The one reader of every image the project classifies - crops, photos, uploads - so all of them
    get the same checks: `source` is a path, the file's bytes or an open file; `name` is what error
    messages call it. Raises ImageError for a missing, non-image, truncated or oversized file.
    """
    name = _source_name(source, name)
    with _opened(source, max_pixels, name) as image:
        try:
            image.load()  # decode now, so a truncated file fails here and not later
            return to_rgb(ImageOps.exif_transpose(image), name)
        except (ImageError, MemoryError):
            raise
        except Exception as error:  # decoders, EXIF parsing and mode conversion raise any type
            raise ImageError(f"{name}: damaged or truncated image data ({_describe(error)})") from error


def peek_image(source: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[int, int, str | None]:
    """(width, height, format) of the image as `load_image` will return it, from the header alone.

    Upright: an EXIF orientation that turns the image by a quarter swaps width and height, so boxes
    planned against this size fit the decoded image. Same refusals as `load_image` except truncated
    pixel data, which only decoding finds.
    """
    name = _source_name(source, None)
    with _opened(source, max_pixels, name) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        except Exception:  # a damaged EXIF block: exif_transpose will ignore it too
            orientation = 1
        if orientation in QUARTER_TURNS:
            width, height = height, width
        return width, height, image.format


def _describe(error: BaseException) -> str:
    """`ValueError: Reached EOF while reading header`: the type says what the bare text often does not."""
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


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
        # The training pipeline (facemask.data) calls this same function, so crops are resized alike
        # there and here: Pillow's bilinear, which antialiases when it shrinks.
        image = image.convert("RGB").resize((image_size[1], image_size[0]), Image.BILINEAR)
        batch[i] = np.asarray(image, dtype=np.float32)
    return batch


def shrink(image: Image.Image, max_side: int | None) -> Image.Image:
    """The image scaled down to `max_side` on its long side (None, or no larger already: unchanged)."""
    width, height = image.size
    if max_side is None or max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)


def clip_box(box: Sequence[float], width: int, height: int) -> Box:
    """Round a box to whole pixels and keep it inside the image."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def face_box(box: Sequence[float], margin: float, width: int, height: int) -> Box:
    """The pixels to cut for a face: the box widened by `margin` of its size on every side, clipped.

    The one box arithmetic of the project: split.py cuts the training crops with it and detection the
    served ones, so a face annotated and a face detected in the same place give the same pixels.
    The result can be empty (x1 <= x0 or y1 <= y0) when the box lies outside the image.
    """
    x0, y0, x1, y1 = box
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    return clip_box((x0 - dx, y0 - dy, x1 + dx, y1 + dy), width, height)


def crop_face(image: Image.Image, box: Sequence[float], margin: float = DEFAULT_MARGIN) -> Image.Image:
    """The face widened by `margin` of its size on every side, clipped to the image."""
    return image.crop(face_box(box, margin, *image.size))
