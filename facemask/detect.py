"""From a photo to faces boxed green (mask) or red (no mask).

The detection stage chains two models: a face detector (CenterFace by default, or MTCNN, behind a
one-method interface)
finds the faces on a copy of the photo no larger than `max_side`, each face is cropped from the
full-resolution original with a margin (as split.py cuts the training crops), and all the faces
of one photo go through the mask classifier in a single batched call. Two thresholds decide what is
shown: the face detector's confidence from which a face is kept (`face_threshold`, `--face-threshold`)
and the classifier's decision threshold, from which P(no-mask) means no mask (`no_mask_threshold`,
`--threshold`: by default the one chosen on validation at training time, kept in the model's sidecar).

    python -m facemask.detect --model models/compact.keras photo.jpg clip.mp4 --out out/

`--model` is a .keras file or its .onnx or .tflite export (facemask.classifier.load_served).

Photos give `out/<stem>_annotated.<ext>` and `out/<stem>.json`; videos (see facemask.video) give
`out/<stem>_annotated.mp4`, without sound. Inputs sharing a stem get `<stem>-2`, `<stem>-3`...: no
output overwrites another.
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facemask import CLASS_NAMES, DEFAULT_MARGIN, MAX_MARGIN, save_atomically
from facemask.classifier import as_classifier, load_served
from facemask.cli import ArgumentParser, add_threshold_options, deferred_stop, fail, number_in, raise_if_stopped, run
from facemask.detectors import (
    DEFAULT_DETECTOR,
    FACE_DETECTORS,
    FaceDetector,
    make_face_detector,
)
from facemask.images import Box, ImageError, clip_box, crop_face, load_image, shrink
from facemask.models import decision_threshold
from facemask.video import VIDEO_EXTENSIONS, VIDEO_MAX_SIDE, VideoError, annotate_video

__all__ = [
    "MASK_COLOUR", "NO_MASK_COLOUR", "Detection", "FaceMaskDetector", "ImageError",
    "VideoError", "annotate_video", "draw_detections", "load_image", "main",
]

MASK_COLOUR = (0, 200, 0)
NO_MASK_COLOUR = (220, 0, 0)
LABEL_TEXT_COLOUR = (255, 255, 255)
# Pillow can write these; anything else (e.g. .gif, .heic) is annotated as PNG.
SAVEABLE_PHOTO_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

@dataclass
class Detection:
    """One face: its box in the original photo's pixels, how sure each model is, and the label."""

    box: Box  # x0, y0, x1, y1 (x1, y1 exclusive)
    score: float  # face detector confidence
    p_mask: float
    p_no_mask: float
    label: str

    def to_dict(self) -> dict:
        return asdict(self) | {"box": list(self.box)}


class FaceMaskDetector:
    """Face detector + mask classifier: `detect(photo)` gives one Detection per face.

    `model`: a facemask.classifier.Classifier (`from_path` loads any format) or a Keras model in memory,
    kept as `classifier`.
    `face_threshold`: the face detector's score from which a face is kept (None: the detector's own).
    `no_mask_threshold`: a face is labelled no-mask when its P(no-mask) is at least this (`from_path`
    takes the model's own, chosen on validation; 0.5 is the most probable class).
    """

    def __init__(self, model, class_names: Sequence[str] = CLASS_NAMES, face_detector: FaceDetector | None = None,
                 margin: float = DEFAULT_MARGIN, min_size: int = 0, face_threshold: float | None = None,
                 no_mask_threshold: float = 0.5, max_side: int = 1024):
        if sorted(class_names) != sorted(CLASS_NAMES):
            raise ValueError(f"the model's classes are {list(class_names)}; detection needs {CLASS_NAMES}")
        if not 0 <= no_mask_threshold <= 1:
            raise ValueError(f"the decision threshold is a probability, from 0 to 1, not {no_mask_threshold}")
        # None: the benches that only find faces.
        self.classifier = None if model is None else as_classifier(model, class_names)
        self.class_names = list(class_names)
        self.face_detector = face_detector if face_detector is not None else make_face_detector(DEFAULT_DETECTOR)
        self.margin = margin
        self.min_size = min_size
        # Each detector's scores mean something else: by default, its own threshold (none: keep all).
        self.face_threshold = (face_threshold if face_threshold is not None
                               else getattr(self.face_detector, "threshold", 0.0))
        self.no_mask_threshold = no_mask_threshold
        self.max_side = max_side

    @classmethod
    def from_path(cls, model_path: str | Path, no_mask_threshold: float | None = None, **kwargs) -> FaceMaskDetector:
        """The detector for a saved model (any format, facemask.classifier.load_served), served at its own
        decision threshold unless `no_mask_threshold`."""
        classifier = load_served(model_path)
        if no_mask_threshold is None:
            no_mask_threshold = decision_threshold(model_path)
        return cls(classifier, class_names=classifier.class_names, no_mask_threshold=no_mask_threshold, **kwargs)

    def find_faces(self, image: Image.Image, max_side: int | None = None,
                   min_score: float | None = None) -> list[tuple[Box, float]]:
        """Faces found on a copy no larger than max_side (default: the detector's), boxes in the original,
        from the score `min_score` (default: `face_threshold`; facemask.watch also takes fainter ones)."""
        cutoff = self.face_threshold if min_score is None else min_score
        width, height = image.size
        max_side = max_side or self.max_side
        scale = min(1.0, max_side / max(width, height))
        small = shrink(image, max_side)
        faces = []
        # A copy shrunk for speed (video frames) is not enlarged again by a detector that upscales small images.
        for raw_box, score in self.face_detector.find_faces(np.asarray(small), allow_upscale=scale >= 1.0):
            box = clip_box([v / scale for v in raw_box], width, height)
            face_width, face_height = box[2] - box[0], box[3] - box[1]
            if score >= cutoff and min(face_width, face_height) >= max(1, self.min_size):
                faces.append((box, score))
        return faces

    def detect(self, image: Image.Image, max_side: int | None = None) -> list[Detection]:
        image = image if image.mode == "RGB" else image.convert("RGB")
        return self.classify(image, self.find_faces(image, max_side))

    def annotate(self, image: Image.Image, max_side: int | None = None) -> tuple[Image.Image, list[Detection]]:
        """The photo (or video frame) with its faces drawn (draw_detections), and the faces."""
        detections = self.detect(image, max_side)
        return draw_detections(image, detections), detections

    def classify(self, image: Image.Image, faces: list[tuple[Box, float]]) -> list[Detection]:
        """Crop the faces from the original photo and classify them all together."""
        if not faces:
            return []
        # One batched model call for all the faces of the photo.
        probabilities = self.classifier.predict_proba([crop_face(image, box, self.margin) for box, _ in faces])
        mask_index, no_mask_index = self.class_names.index("mask"), self.class_names.index("no-mask")
        detections = []
        for (box, score), row in zip(faces, probabilities, strict=True):
            p_mask, p_no_mask = float(row[mask_index]), float(row[no_mask_index])
            label = "no-mask" if p_no_mask >= self.no_mask_threshold else "mask"
            detections.append(Detection(box, float(score), p_mask, p_no_mask, label))
        return detections


# A label over 3 times wider than its face shrinks to the face's number.
LABEL_MAX_FACE_WIDTHS = 3


def label_text(number: int, detection: Detection) -> str:
    """"1 mask 97%": the face's number (its row in the web app's table), its class, the classifier's confidence."""
    probability = detection.p_mask if detection.label == "mask" else detection.p_no_mask
    return f"{number} {detection.label} {probability:.0%}"


def draw_detections(image: Image.Image, detections: Sequence[Detection],
                    numbers: Sequence[int] | None = None) -> Image.Image:
    """A copy of the photo with a coloured box and a "1 mask 97%" label on every face, numbered from 1
    (or by `numbers`, one per face: the person numbers of facemask.watch).

    On a face much narrower than its label (a crowd of small faces) the label is the number alone,
    so labels do not cover the neighbouring faces; the colour still tells the class.
    """
    annotated = image.convert("RGB")  # convert always copies
    draw = ImageDraw.Draw(annotated)
    width, height = annotated.size
    # Scaled to the photo: 2 px lines and 15 px text on a 640 px photo, proportionally more on larger ones.
    line_width = max(1, round(max(width, height) / 320))
    font_size = max(11, round(max(width, height) / 42))
    font = ImageFont.load_default(size=font_size)
    numbers = range(1, len(detections) + 1) if numbers is None else numbers
    for number, detection in zip(numbers, detections, strict=True):
        colour = MASK_COLOUR if detection.label == "mask" else NO_MASK_COLOUR
        x0, y0, x1, y1 = detection.box
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=colour, width=line_width)
        text = label_text(number, detection)
        if draw.textlength(text, font=font) > LABEL_MAX_FACE_WIDTHS * (x1 - x0):
            text = str(number)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        label_width, label_height = right - left + 2 * line_width, bottom - top + 2 * line_width
        # Above the box, or inside it when the box touches the top of the photo.
        label_y = y0 - label_height if y0 - label_height >= 0 else y0
        label_x = max(0, min(x0, width - label_width))
        draw.rectangle((label_x, label_y, label_x + label_width, label_y + label_height), fill=colour)
        draw.text((label_x + line_width - left, label_y + line_width - top), text, fill=LABEL_TEXT_COLOUR, font=font)
    return annotated


def annotate_photo(path: Path, out_dir: Path, detector: FaceMaskDetector, stem: str | None = None) -> str:
    """Annotated copy and JSON of one photo, named after `stem` (default: the photo's); returns its summary."""
    stem = stem or path.stem
    image = load_image(path)
    annotated, detections = detector.annotate(image)
    extension = path.suffix.lower() if path.suffix.lower() in SAVEABLE_PHOTO_EXTENSIONS else ".png"
    annotated_path = out_dir / f"{stem}_annotated{extension}"
    save_options = {"quality": 95} if extension in (".jpg", ".jpeg", ".webp") else {}
    payload = json.dumps([d.to_dict() for d in detections], indent=2) + "\n"
    with deferred_stop():  # a stop waits for the pair: never a photo without its JSON
        save_atomically(annotated_path, lambda target: annotated.save(target, format=Image.registered_extensions()[
            extension], **save_options))
        save_atomically(out_dir / f"{stem}.json", lambda target: target.write_text(payload))
    masks = sum(d.label == "mask" for d in detections)
    return (f"{path.name}: {len(detections)} face{'s' if len(detections) != 1 else ''}, {masks} mask, "
            f"{len(detections) - masks} no-mask -> {annotated_path}")


def annotate_video_file(path: Path, out_dir: Path, detector: FaceMaskDetector, max_side: int = VIDEO_MAX_SIDE,
                        stem: str | None = None) -> str:
    """Annotated MP4 of one video with a tqdm progress bar; returns its summary line.

    A warning (fewer frames read than the header announces) goes to stderr as a `warning:` line.
    """
    from tqdm import tqdm

    destination = out_dir / f"{stem or path.stem}_annotated.mp4"
    bars = []  # the bar opens with the first frame, so a refused file prints only its error

    def progress(done: int, total: int | None) -> None:
        if not bars:
            bars.append(tqdm(desc=path.name, total=total, unit="frame", file=sys.stderr))
        bars[0].update(done - bars[0].n)

    try:
        stats = annotate_video(path, destination, detector, max_side=max_side, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    if stats["warning"]:
        print(f"warning: {stats['warning']}", file=sys.stderr, flush=True)
    sound = ", sound not kept" if stats["has_audio"] else ""
    return (f"{path.name}: {stats['frames']} frames at {stats['fps_source']:.2f} fps{sound}, "
            f"processed at {stats['processing_fps']:.2f} frames/s -> {destination}")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def output_stems(inputs: Sequence[Path]) -> list[str]:
    """One output name per input, all different: a repeated stem gets -2, -3... so no result overwrites another.

    Photos write <stem>.json and <stem>_annotated.<ext>, videos <stem>_annotated.mp4; x.jpg and x.png,
    or a/x.jpg and b/x.jpg, would otherwise write the same x.json.
    """
    taken: set[str] = set()
    stems = []
    for path in inputs:
        stem, counter = path.stem, 1
        while stem.lower() in taken:  # lower: two names differing in case are one file on some disks
            counter += 1
            stem = f"{path.stem}-{counter}"
        taken.add(stem.lower())
        stems.append(stem)
    return stems


def check_out_dir(out: Path) -> str | None:
    """Why the output folder cannot be used or created, or None; checked before the model loads."""
    if out.exists():
        if not out.is_dir():
            return f"{out}: the output path exists and is not a folder"
        return None if os.access(out, os.W_OK | os.X_OK) else f"{out}: cannot write into the output folder"
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{out}: cannot create the output folder, {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{out}: cannot create the output folder (permission denied in {parent})"
    return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m facemask.detect", description=__doc__.split("\n\n")[0],
                            epilog="Videos are written without their sound track.")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="photos and/or videos")
    parser.add_argument("--model", type=Path, required=True, metavar="FILE",
                        help="a saved classifier: .keras, or its .onnx/.tflite export")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder")
    parser.add_argument("--margin", type=number_in(float, 0, MAX_MARGIN), default=DEFAULT_MARGIN,
                        help=f"crop margin around a face, a fraction of its size, 0 to {MAX_MARGIN:g} (split.py's too)")
    parser.add_argument("--min-size", type=number_in(int, 0), default=0, metavar="N",
                        help="ignore faces whose shorter side is under N px")
    parser.add_argument("--detector", choices=list(FACE_DETECTORS), default=DEFAULT_DETECTOR, help="face detector")
    add_threshold_options(parser)
    parser.add_argument("--max-side", type=number_in(int, 1), default=1024,
                        help="detect faces on a copy of a photo at most this big")
    parser.add_argument("--video-max-side", type=number_in(int, 1), default=VIDEO_MAX_SIDE,
                        help="the same for video frames (webcam faces are large, and it is what makes 17-27 "
                             "frames/s on 2 cores)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = check_out_dir(args.out)  # before the model's seconds of loading
    if problem:
        return fail(problem)
    try:
        detector = FaceMaskDetector.from_path(args.model, face_detector=make_face_detector(args.detector),
                                              margin=args.margin, min_size=args.min_size,
                                              face_threshold=args.face_threshold, no_mask_threshold=args.threshold,
                                              max_side=args.max_side)
    except (OSError, ValueError) as error:
        return fail(error)
    created = not args.out.exists()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return fail(f"{args.out}: cannot create the output folder ({error.strerror})")
    failures = 0
    try:
        for path, stem in zip(args.inputs, output_stems(args.inputs), strict=True):
            try:
                if is_video(path):
                    print(annotate_video_file(path, args.out, detector, args.video_max_side, stem), flush=True)
                else:
                    print(annotate_photo(path, args.out, detector, stem), flush=True)
            except (ImageError, VideoError, OSError) as error:
                raise_if_stopped()  # Ctrl+C reaches ffmpeg too, which can fail first: the stop, not the file
                failures += 1
                fail(error if str(path) in str(error) else f"{path}: {error}")
    finally:
        if created:  # stopped or failed before writing anything: leave no empty folder behind
            with contextlib.suppress(OSError):
                args.out.rmdir()
    return 1 if failures else 0


if __name__ == "__main__":
    run(main)
