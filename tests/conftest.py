"""Shared fixtures: the real sample (committed), the generated sample (hand-made pixels) and the
real data folder (optional)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's facemask/, whatever else is installed
SHARED = ROOT.parent / "shared" / "datasets"
REAL_SAMPLE = ROOT / "sample"  # 60 CC0 photos of the Kaggle set, committed (scripts/make_sample.py)

requires_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"real data folder {SHARED} is absent (it is not part of a fresh clone)"
)


@pytest.fixture(scope="session")
def astronaut():
    """A real public-domain face that ships with scikit-image (512x512 RGB), as a PIL image."""
    from PIL import Image
    from skimage import data as skimage_data

    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(scope="session")
def real_sample_dir() -> Path:
    """The real photos committed in sample/ (images/ and train.csv): the default data of the tests."""
    assert (REAL_SAMPLE / "train.csv").is_file(), f"{REAL_SAMPLE} is part of the repository"
    return REAL_SAMPLE


@pytest.fixture(scope="session")
def real_sample_crops(real_sample_dir, tmp_path_factory) -> Path:
    """The real sample cropped by split.py into train/valid/test x mask/no-mask (70/15/15)."""
    from facemask import split

    out = tmp_path_factory.mktemp("real-crops") / "data"
    code = split.main([str(real_sample_dir / "images"), str(real_sample_dir / "train.csv"), "70", "15", "15",
                       "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The generated sample in the Kaggle layout (images/ and train.csv), for tests that need
    hand-made pixels: cartoon faces whose classes a few epochs of training tell apart."""
    from facemask.sample import make_sample

    out = tmp_path_factory.mktemp("sample")
    make_sample(out, photos=40, seed=0)
    return out


@pytest.fixture(scope="session")
def sample_crops(sample_dir, tmp_path_factory) -> Path:
    """The generated sample cropped by split.py into train/valid/test x mask/no-mask (70/15/15)."""
    from facemask import split

    out = tmp_path_factory.mktemp("crops") / "data"
    code = split.main([str(sample_dir / "images"), str(sample_dir / "train.csv"), "70", "15", "15", "--out", str(out)])
    assert code == 0
    return out


# ---------------------------------------------------------------- test doubles


class RecordingModel:
    """Stands in for a Keras classifier and keeps every batch it is given: what the model would see.

    Answers P(mask) from the crop's mean green against red, so labels vary with the pixels.
    """

    output_shape = (None, 2)

    def __init__(self, image_size: tuple[int, int] = (224, 224)):
        self.input_shape = (None, *image_size, 3)
        self.batches: list = []

    def predict_on_batch(self, batch):
        import numpy as np

        self.batches.append(np.array(batch))
        p_mask = 1 / (1 + np.exp(-(batch[..., 1].mean(axis=(1, 2)) - batch[..., 0].mean(axis=(1, 2))) / 10))
        return np.stack([p_mask, 1 - p_mask], axis=1).astype(np.float32)


@pytest.fixture
def drawn_texts(monkeypatch) -> list[str]:
    """Every text Pillow draws during the test (the labels on the boxes), in order; an app served by the
    test runs in its process, so its drawing is seen too."""
    from PIL import ImageDraw

    texts: list[str] = []
    real_text = ImageDraw.ImageDraw.text

    def text(self, xy, content, *args, **kwargs):
        texts.append(content)
        return real_text(self, xy, content, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", text)
    return texts


class FixedFaces:
    """A face detector double that finds the same boxes (x0, y0, x1, y1) in any image, score 0.99."""

    def __init__(self, *boxes):
        self.boxes = boxes

    def find_faces(self, rgb):
        return [(tuple(float(v) for v in box), 0.99) for box in self.boxes]


class RecordingFaces(FixedFaces):
    """FixedFaces that also keeps the size (width, height) of every image it is given: what detection ran on."""

    def __init__(self, *boxes):
        super().__init__(*boxes)
        self.sizes: list[tuple[int, int]] = []

    def find_faces(self, rgb):
        self.sizes.append((rgb.shape[1], rgb.shape[0]))
        return super().find_faces(rgb)


class TruthFaceDetector:
    """A face detector double that "finds" the annotated faces of known photos, recognised by their pixels.

    Built from a Kaggle-layout folder (photos as facemask.images.load_image reads them, faces as split.py
    reads the CSV). `miss_every` k > 0 leaves out every k-th face of each photo; `false_faces` adds one
    box per photo where no face is (the top-left 4x4 pixels, score 0.95). Scores fall 0.999, 0.998, ...
    """

    threshold = 0.5  # the score from which its faces are shown, as every FaceDetector says

    def __init__(self, images_dir: Path, csv_path: Path, miss_every: int = 0, false_faces: bool = False):
        import hashlib

        import numpy as np

        from facemask import split
        from facemask.images import load_image

        self._hash = lambda rgb: hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()
        faces, _ = split.apply_class_rules(split.read_rows(csv_path), "no-mask")
        boxes: dict[str, list] = {}
        for row, _ in faces:
            boxes.setdefault(row.name, []).append((row.xmin, row.ymin, row.xmax, row.ymax))
        self.faces = {}
        for name, found in boxes.items():
            if (images_dir / name).is_file():
                kept = [box for i, box in enumerate(found) if not (miss_every and i % miss_every == miss_every - 1)]
                self.faces[self._hash(np.asarray(load_image(images_dir / name)))] = kept
        self.false_faces = false_faces

    def find_faces(self, rgb):
        boxes = self.faces.get(self._hash(rgb), [])  # an unknown image (the warm-up) has no face
        found = [(tuple(float(v) for v in box), 0.999 - 0.001 * (i % 90)) for i, box in enumerate(boxes)]
        return found + ([((0.0, 0.0, 4.0, 4.0), 0.95)] if self.false_faces else [])


def build_colour_model(size: int = 16, weight: float = 0.01):
    """A real Keras classifier with the project's contract (raw RGB in, 2-way softmax out) and fixed
    weights: logits = +-weight * (mean red - mean blue), so reddish is "mask" and bluish "no-mask"."""
    import keras
    import numpy as np

    inputs = keras.Input(shape=(size, size, 3))
    outputs = keras.layers.Dense(2, activation="softmax", name="probabilities")(
        keras.layers.GlobalAveragePooling2D()(inputs)
    )
    model = keras.Model(inputs, outputs)
    kernel = np.array([[weight, -weight], [0.0, 0.0], [-weight, weight]], dtype=np.float32)
    model.get_layer("probabilities").set_weights([kernel, np.zeros(2, dtype=np.float32)])
    return model


@pytest.fixture(scope="session")
def colour_model_file(tmp_path_factory) -> Path:
    """The colour model saved as facemask saves models (.keras and its class-name sidecar)."""
    from facemask.models import save_model

    path = tmp_path_factory.mktemp("model") / "colour.keras"
    save_model(build_colour_model(), path)
    return path
