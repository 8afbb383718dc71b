"""A small generated face-mask data set in the exact Kaggle "Face Mask Detection" layout.

Real photos ship with the repository (`sample/`, 60 CC0 photos of the Kaggle set); this generated
set is for the tests that need hand-made pixels and for quick runs of any size: photos with
several cartoon faces each, some masked and some not, and a `train.csv` with the real header
`name,x1,x2,y1,y2,classname`, whose four number columns hold xmin, ymin, xmax, ymax in that order
(the Kaggle file's trap, reproduced on purpose).

    python scripts/make_cartoon_sample.py --out generated-sample --photos 80 --seed 42

The same seed gives byte-identical files. The two classes differ the way real ones do (a
coloured cloth over the nose and mouth versus a visible nose and mouth) but with enough
variety in skin tone, size, position, mask colour and background that a CNN has to learn the
difference rather than a single pixel value.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from facemask import DEFAULT_SEED

HEADER = ["name", "x1", "x2", "y1", "y2", "classname"]
SKIN_TONES = [(255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 32)]
MASK_COLOURS = [(235, 240, 245), (120, 180, 230), (40, 40, 45), (70, 130, 90), (200, 60, 80), (250, 250, 200)]
# Share of faces per class, roughly the Kaggle set's imbalance (most faces wear a mask).
CLASS_WEIGHTS = {"face_with_mask": 0.62, "face_no_mask": 0.32, "face_with_mask_incorrect": 0.06}
OBJECT_CLASSES = ["hat", "eyeglasses", "mask_surgical"]


def draw_face(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], kind: str, rng: np.random.Generator) -> None:
    """Draw one face filling `box`; `kind` is one of the three Kaggle face classes."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    hair = tuple(int(c) for c in rng.integers(0, 90, 3))
    draw.ellipse((x0, y0, x1, y1), fill=skin)
    draw.chord((x0, y0, x1, y0 + h * 0.6), 180, 360, fill=hair)  # hair on top
    eye_y = y0 + h * 0.45
    for ex in (x0 + w * 0.32, x0 + w * 0.68):
        r = max(1.5, w * 0.06)
        draw.ellipse((ex - r * 1.6, eye_y - r, ex + r * 1.6, eye_y + r), fill=(250, 250, 250))
        draw.ellipse((ex - r, eye_y - r, ex + r, eye_y + r), fill=(30, 30, 60))
    nose = [(x0 + w * 0.5, y0 + h * 0.52), (x0 + w * 0.44, y0 + h * 0.66), (x0 + w * 0.56, y0 + h * 0.66)]
    shade = tuple(int(c * 0.8) for c in skin)
    draw.polygon(nose, fill=shade)
    mouth = (x0 + w * 0.35, y0 + h * 0.72, x0 + w * 0.65, y0 + h * 0.84)
    draw.chord(mouth, 0, 180, fill=(170, 40, 50))
    if kind == "face_no_mask":
        return
    # A mask covers nose and mouth; worn incorrectly it sits below the nose.
    top = y0 + h * (0.5 if kind == "face_with_mask" else 0.68)
    colour = MASK_COLOURS[rng.integers(len(MASK_COLOURS))]
    draw.polygon([(x0 + w * 0.12, top), (x1 - w * 0.12, top), (x1 - w * 0.2, y0 + h * 0.93),
                  (x0 + w * 0.5, y1 - h * 0.02), (x0 + w * 0.2, y0 + h * 0.93)], fill=colour)
    pleat = tuple(int(c * 0.75) for c in colour)
    for k in (1, 2, 3):
        yy = top + (y0 + h * 0.9 - top) * k / 4
        draw.line((x0 + w * 0.22, yy, x1 - w * 0.22, yy), fill=pleat, width=max(1, w // 40))
    draw.line((x0 + w * 0.12, top, x0, y0 + h * 0.45), fill=pleat, width=max(1, w // 30))
    draw.line((x1 - w * 0.12, top, x1, y0 + h * 0.45), fill=pleat, width=max(1, w // 30))


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A noisy two-colour gradient, so crops carry background texture like real photos."""
    a, b = rng.integers(40, 230, 3), rng.integers(40, 230, 3)
    t = np.linspace(0, 1, width)[None, :, None]
    grad = a * (1 - t) + b * t
    pixels = np.broadcast_to(grad, (height, width, 3)) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _place_boxes(rng: np.random.Generator, width: int, height: int, count: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping face boxes, 36 to 110 px wide, faces a little taller than wide."""
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(count * 20):
        if len(boxes) == count:
            break
        w = int(rng.integers(36, 111))
        h = int(w * rng.uniform(1.1, 1.3))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        box = (x0, y0, x0 + w, y0 + h)
        if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in boxes):
            boxes.append(box)
    return boxes


def make_photo(rng: np.random.Generator) -> tuple[Image.Image, list[tuple[tuple[int, int, int, int], str]]]:
    """One photo with 2 to 5 faces, and its (box, classname) rows."""
    width, height = int(rng.integers(360, 560)), int(rng.integers(280, 420))
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    classes, weights = list(CLASS_WEIGHTS), list(CLASS_WEIGHTS.values())
    rows = []
    for box in _place_boxes(rng, width, height, int(rng.integers(2, 6))):
        kind = classes[rng.choice(len(classes), p=weights)]
        draw_face(draw, box, kind, rng)
        rows.append((box, kind))
        if rng.random() < 0.3:  # an object box, which split.py must ignore
            x0, y0, x1, y1 = box
            rows.append(((x0, y0, x1, y0 + (y1 - y0) // 3), OBJECT_CLASSES[rng.integers(len(OBJECT_CLASSES))]))
    return image.filter(ImageFilter.GaussianBlur(0.6)), rows


def make_sample(out: Path | str, photos: int = 80, seed: int = DEFAULT_SEED) -> Path:
    """Write `out/images/` and `out/train.csv`; return the CSV's path."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    csv_rows = []
    for i in range(photos):
        image, rows = make_photo(rng)
        # Mostly jpg, some png, a few in other modes, as in the Kaggle folder.
        if i % 10 == 3:
            name = f"sample{i:04d}.png"
            image.convert("RGBA" if i % 20 == 3 else "P").save(out / "images" / name)
        else:
            name = f"sample{i:04d}.jpg"
            image.save(out / "images" / name, quality=92)
        csv_rows += [(name, *box, kind) for box, kind in rows]
    csv_path = out / "train.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(csv_rows)
    return csv_path
