"""From a photo to faces boxed green (mask) or red (no mask): the detector, the drawing, the files.

FaceMaskDetector chains two models: a face detector (CenterFace by default, or MTCNN, behind the
one-method interface of facemask.detectors) finds the faces on a copy of the photo no larger than
`max_side`; their boxes are brought back to the full-resolution original and clipped to it there,
once; each face is cropped from the original with a margin (as split.py cuts the training crops), and
all the faces of one photo go through the mask classifier in a single batched call. Two thresholds
decide what is shown: the face detector's confidence from which a face is kept (`face_threshold`, by
default the detector's own) and the classifier's decision threshold, from which P(no-mask) means no
mask (`no_mask_threshold`; `from_path` takes the one chosen on validation at training time, kept in
the model's sidecar, and the crop margin recorded there too).

`annotate_photo` writes `<stem>_annotated.<ext>` and `<stem>.json` for a photo, `annotate_video_file`
`<stem>_annotated.mp4` for a video (see facemask.video), without sound. facemask.detect is their
command line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from facemask import CLASS_NAMES, DEFAULT_MARGIN, DEFAULT_THRESHOLD, save_atomically, save_json
from facemask.classifier import as_classifier, load_served
from facemask.cli import deferred_stop
from facemask.detectors import DEFAULT_DETECTOR, FaceDetector, make_face_detector
from facemask.images import Box, clip_box, crop_face, load_image, shrink
from facemask.metrics import face_label
from facemask.sidecar import decision_threshold
from facemask.video import VIDEO_MAX_SIDE, annotate_video

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
                 no_mask_threshold: float = DEFAULT_THRESHOLD, max_side: int = 1024):
        if not 0 <= no_mask_threshold <= 1:
            raise ValueError(f"the decision threshold is a probability, from 0 to 1, not {no_mask_threshold}")
        # None: the benches that only find faces.
        self.classifier = None if model is None else as_classifier(model, class_names)
        self.class_names = list(class_names)
        self.face_detector = face_detector if face_detector is not None else make_face_detector(DEFAULT_DETECTOR)
        self.margin = margin
        self.min_size = min_size
        # Each detector's scores mean something else: by default, its own threshold.
        self.face_threshold = self.face_detector.threshold if face_threshold is None else face_threshold
        self.no_mask_threshold = no_mask_threshold
        self.max_side = max_side

    @property
    def thread_safe(self) -> bool:
        """Whether `detect` may run on several frames at once: when its face detector and its classifier
        both allow it (CenterFace and a classifier on ONNX Runtime; not MTCNN, cv2.dnn, TFLite or Keras)."""
        return all(getattr(part, "thread_safe", False) for part in (self.face_detector, self.classifier))

    @classmethod
    def from_path(cls, model_path: str | Path, no_mask_threshold: float | None = None, margin: float | None = None,
                  **kwargs) -> FaceMaskDetector:
        """The detector for a saved model (any format, facemask.classifier.load_served), served at its own
        decision threshold unless `no_mask_threshold`, cropping faces with the margin it was trained with
        (its sidecar's) unless `margin`."""
        classifier = load_served(model_path)
        if no_mask_threshold is None:
            no_mask_threshold = decision_threshold(model_path)
        return cls(classifier, class_names=classifier.class_names, no_mask_threshold=no_mask_threshold,
                   margin=classifier.margin if margin is None else margin, **kwargs)

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
        return self.draw(image, detections), detections

    def draw(self, image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
        """The photo with `detections` drawn (draw_detections); facemask.video draws in a thread of its own."""
        return draw_detections(image, detections)

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
            detections.append(Detection(box, float(score), p_mask, p_no_mask,
                                        face_label(p_no_mask, self.no_mask_threshold)))
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
    with deferred_stop():  # a stop waits for the pair: never a photo without its JSON
        save_atomically(annotated_path, lambda target: annotated.save(target, format=Image.registered_extensions()[
            extension], **save_options))
        save_json(out_dir / f"{stem}.json", [d.to_dict() for d in detections])
    masks = sum(d.label == "mask" for d in detections)
    return (f"{path.name}: {len(detections)} face{'s' if len(detections) != 1 else ''}, {masks} mask, "
            f"{len(detections) - masks} no-mask -> {annotated_path}")


def annotate_video_file(path: Path, out_dir: Path, detector: FaceMaskDetector, max_side: int = VIDEO_MAX_SIDE,
                        stem: str | None = None) -> str:
    """Annotated MP4 of one video with a tqdm progress bar; returns its summary line.

    A warning (fewer frames read than the header announces) goes to stderr as a `warning:` line.
    """
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
