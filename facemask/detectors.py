"""Face detectors: anything that finds faces in an RGB array, behind one small interface.

`make_face_detector(name)` builds one by name, so the detect command, the web app and the
evaluation all offer the same `--detector` choices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from PIL import Image

RawFace = tuple[tuple[float, float, float, float], float]  # (x0, y0, x1, y1) in the array's pixels, confidence


class FaceDetector(Protocol):
    """Anything that finds faces: boxes (x0, y0, x1, y1) in the pixels of `rgb`, with a confidence."""

    def find_faces(self, rgb: np.ndarray) -> list[RawFace]: ...


class MTCNNFaceDetector:
    """MTCNN from the `mtcnn` package (TensorFlow; its weights ship inside the wheel).

    `min_face_size` (pixels of the array it is given) trades small faces for speed: 10 finds faces of
    10 px on a 2x upsampled copy, at about 4 times the cost. `graph=True`
    runs MTCNN's three networks as compiled TensorFlow graphs: the package calls them eagerly,
    layer by layer, and that Python overhead is most of its time on a CPU (same boxes, ~3x faster).
    """

    # mtcnn 1.0 counts its image pyramid's levels as if min_face_size were 12 but starts it at
    # 12 / min_face_size: only near 20 does the pyramid span the image. Above, its last level is
    # under PNet's 12 px and the convolution fails; below, it stops before the coarse levels that
    # find the largest faces. So MTCNN always runs at 20, on the image resized by 20 / min_face_size.
    PYRAMID_MIN_FACE = 20

    def __init__(self, min_face_size: int = 20, graph: bool = True,
                 stage_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8)):
        import tensorflow as tf
        from mtcnn import MTCNN  # imported here: TensorFlow and its networks take seconds to load

        self.min_face_size = min_face_size
        # PNet, RNet, ONet score thresholds (the package's defaults); lower finds more masked faces.
        self.stage_options = dict(zip(("threshold_pnet", "threshold_rnet", "threshold_onet"), stage_thresholds,
                                      strict=True))
        self.mtcnn = MTCNN()  # created once: building the networks costs more than a detection
        if graph:
            for stage in self.mtcnn.stages:
                # reduce_retracing: one graph serves every pyramid level and every number of candidates.
                stage._model = tf.function(stage.model, reduce_retracing=True)

    def find_faces(self, rgb: np.ndarray) -> list[RawFace]:
        scale = self.PYRAMID_MIN_FACE / self.min_face_size
        if scale != 1.0:
            height, width = rgb.shape[:2]
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        results = self.mtcnn.detect_faces(np.ascontiguousarray(rgb), min_face_size=self.PYRAMID_MIN_FACE,
                                          **self.stage_options)
        faces = []
        for result in results:
            x, y, width, height = (float(v) / scale for v in result["box"])
            faces.append(((x, y, x + width, y + height), float(result["confidence"])))
        return faces


# Name -> a function building the detector; the first is the default.
FACE_DETECTORS: dict[str, Callable[[], FaceDetector]] = {"mtcnn": MTCNNFaceDetector}
DEFAULT_DETECTOR = "mtcnn"


def make_face_detector(name: str = DEFAULT_DETECTOR) -> FaceDetector:
    """A face detector by name (one of FACE_DETECTORS); ValueError names the choices otherwise."""
    if name not in FACE_DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(FACE_DETECTORS)}")
    return FACE_DETECTORS[name]()
