"""A saved model's JSON sidecar (`models/x.keras` -> `models/x.json`): where it is, reading and checking it.

The sidecar keeps what is not in the weights: the class order, the input size, how the model was trained,
its decision threshold on P(no-mask), chosen on the validation split at training time (`no_mask_threshold`;
a sidecar from before it means 0.5, the most probable class), and the crop margin its training crops were
cut with (`margin`; DEFAULT_MARGIN when absent), which serving must crop faces with too.
No Keras here: the ONNX and TFLite classifiers read the same sidecar without loading TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

from facemask import DEFAULT_MARGIN, DEFAULT_THRESHOLD, MAX_MARGIN

# A model's input, pixels a side, whatever its format.
MIN_INPUT_SIDE, MAX_INPUT_SIDE = 8, 1024


def sidecar_path(path: Path | str) -> Path:
    """`models/scratch.keras` keeps its class names in `models/scratch.json`."""
    return Path(path).with_suffix(".json")


def read_sidecar(path: Path | str) -> dict:
    """The checked contents of a model's JSON sidecar: `class_names` (a list of distinct, non-empty
    strings, at least two) and, when present, `image_size` ([height, width], positive integers),
    `no_mask_threshold` (a number from 0 to 1), `training` (an object: how the model was trained) and
    `margin` (the crop margin its training crops were cut with, 0 to MAX_MARGIN); models saved before
    these were recorded have none of them.

    The sidecar is a file anyone can edit or truncate beside the model, so every way it can be
    wrong is a ValueError naming it, which the commands print as one `error:` line.
    """
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read the model's sidecar ({type(error).__name__}: {error})") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: the model's sidecar is not valid JSON ({error})") from error
    except ValueError as error:  # json's own limits, e.g. an integer of more than 4300 digits
        raise ValueError(f"{path}: the model's sidecar cannot be read ({error})") from error
    except RecursionError as error:  # thousands of nested brackets exhaust the decoder's stack
        raise ValueError(f"{path}: the model's sidecar is nested too deeply to be read") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the model's sidecar must be a JSON object, not {json_kind(meta)}")
    if "class_names" not in meta:
        raise ValueError(f"{path}: the model's sidecar has no 'class_names' (the model's class order)")
    names = meta["class_names"]
    # Printable: predict prints tab-separated lines, which a tab or newline in a name would break.
    if not (isinstance(names, list) and len(names) >= 2
            and all(isinstance(n, str) and n and n.isprintable() for n in names) and len(set(names)) == len(names)):
        raise ValueError(f"{path}: 'class_names' must be a list of at least two distinct, non-empty, printable "
                         f"names, not {json_kind(names)}")
    checked = {"class_names": list(names)}
    if "image_size" in meta:
        size = meta["image_size"]
        # bool is an int subclass; true/false are not sizes.
        if not (isinstance(size, list) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ValueError(f"{path}: 'image_size' must be [height, width] in whole pixels, not {json_kind(size)}")
        checked["image_size"] = tuple(size)
    if "no_mask_threshold" in meta:
        threshold = meta["no_mask_threshold"]
        if not (isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0 <= threshold <= 1):
            raise ValueError(f"{path}: 'no_mask_threshold' must be a probability from 0 to 1, "
                             f"not {json_kind(threshold)}")
        checked["no_mask_threshold"] = float(threshold)
    if "training" in meta:
        # A record for people (and facemask.config.TrainConfig); only its being an object is checked.
        if not isinstance(meta["training"], dict):
            raise ValueError(f"{path}: 'training' must be an object (how the model was trained), "
                             f"not {json_kind(meta['training'])}")
        checked["training"] = meta["training"]
    if "margin" in meta:
        margin = meta["margin"]
        if not (isinstance(margin, (int, float)) and not isinstance(margin, bool) and 0 <= margin <= MAX_MARGIN):
            raise ValueError(f"{path}: 'margin' must be a fraction of the face box from 0 to {MAX_MARGIN:g}, "
                             f"not {json_kind(margin)}")
        checked["margin"] = float(margin)
    return checked


def json_kind(value: object) -> str:
    """A short description of a JSON value for an error message, never the whole (maybe huge) value."""
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    if isinstance(value, list):
        short = len(value) <= 4 and all(v is None or isinstance(v, (str, int, float)) and len(str(v)) <= 20
                                        for v in value)
        return json.dumps(value) if short else f"a list of {len(value)} items"
    text = json.dumps(value)  # a scalar: null, true, a number or a string
    return text if len(text) <= 40 else f"{text[:37]}..."


def read_sidecar_of(path: Path | str) -> dict:
    """The checked sidecar of the model file `path`, or {} when it has none."""
    sidecar = sidecar_path(path)
    return read_sidecar(sidecar) if sidecar.exists() else {}


def decision_threshold(path: Path | str) -> float:
    """The decision threshold on P(no-mask) a saved model is served with: its sidecar's, else 0.5
    (a model saved before thresholds were chosen, or without a sidecar). ValueError for a bad sidecar."""
    return read_sidecar_of(path).get("no_mask_threshold", DEFAULT_THRESHOLD)


def crop_margin(path: Path | str) -> float:
    """The margin a saved model's faces are cropped with: the one its training crops were cut with, from its
    sidecar, else DEFAULT_MARGIN (a model saved before margins were recorded). ValueError for a bad sidecar."""
    return read_sidecar_of(path).get("margin", DEFAULT_MARGIN)


def check_input_size(image_size: tuple[int, int], path: Path | str) -> None:
    """ValueError naming the file unless each side is MIN_INPUT_SIDE to MAX_INPUT_SIDE pixels."""
    if not all(MIN_INPUT_SIDE <= side <= MAX_INPUT_SIDE for side in image_size):
        height, width = image_size
        raise ValueError(f"{path}: the model's input is {height}x{width} pixels; a classifier here takes "
                         f"{MIN_INPUT_SIDE} to {MAX_INPUT_SIDE} pixels a side")
