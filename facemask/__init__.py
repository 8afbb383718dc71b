"""Face mask detection with Keras CNNs: one module per stage of the data's journey.

sample   - a small generated data set in the Kaggle layout (photos + train.csv), hand-made pixels
sources  - which photos to crop: the Kaggle download when present, else the real sample in sample/
data     - the tf.data input pipeline and augmentation
models   - the scratch CNN and the fine-tuned VGG16, saving and loading
train    - training (and `python -m facemask.train`)
evaluate - metrics, curves and the misclassified grid
predict  - [P(mask), P(no-mask)] for images (and `python -m facemask.predict`)
detect   - find faces, classify them, draw green/red boxes (and `python -m facemask.detect`)
app      - the Gradio web front-end (`python -m facemask.app`)
"""

import os
import uuid
from collections.abc import Callable
from pathlib import Path

CLASS_NAMES = ["mask", "no-mask"]
IMAGE_SIZE = (224, 224)


def partial_path(path: Path) -> Path:
    """A hidden, unique name beside `path` for writing before the final rename (same file system)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")


def save_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file beside `path`, so a failure leaves no half-written file."""
    temporary = partial_path(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
