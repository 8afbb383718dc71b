"""Benchmark: ours against AIZOO's face-mask SSD, the lightest published peer, on the same frames.

    python bench/peer_bench.py --model models/scratch.keras [--speed-model compact.onnx] [--rounds 5]

AIZOO's model (../shared/peers/aizoo, MIT; a benchmark peer only, never part of the product) runs in
LiteRT (ai-edge-litert, XNNPACK), decoded as its README says: the frame resized to 260x260, RGB / 255;
SSD anchors of 5 feature maps; variances 0.1 / 0.2; confidence = the larger class score; one NMS
at IoU 0.4. Ours: CenterFace on ONNX Runtime (facemask.detectors) on a copy of the frame at most
--max-side large, then every face of the frame cropped and classified in one batch through
facemask.classifier.

Speed: frames per second as far as the detections (boxes and labels; no drawing, no encoding)
on 640x480 frames cut from 5 crowd photos of kaggle-format, rounds alternating, median and best
round, at 1 and 2 threads, and as facemask.video detects: two frames at once, each in a thread (`AtOnce`).
`--speed-model` is the classifier timed (default: the compact-like net
of bench/classify_bench.py with RANDOM weights, exported to ONNX: its speed is that of a trained
one, its labels are meaningless, so it is never scored).

Quality: on the TEST photos of the results split (split.py 80 10 10 --incorrect no-mask, seed 42),
both scored by facemask.metrics (face recall and precision at IoU 0.5 at each one's served
threshold: AIZOO 0.5, ours 0.4; mAP@0.5 over every detection returned). Ours with `--model` (a
trained classifier), on each photo as `evaluate photos` sees it and as a 640 px video frame.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from calibrate_boxes import split_of_photos  # noqa: E402
from centerface_bench import DATA, as_frame, crowd_frames  # noqa: E402
from PIL import Image  # noqa: E402

from facemask.annotations import read_truth  # noqa: E402
from facemask.classifier import load_classifier  # noqa: E402
from facemask.detection import FaceMaskDetector  # noqa: E402
from facemask.detectors import CenterFaceDetector, non_maximum_suppression  # noqa: E402
from facemask.images import crop_face, load_image  # noqa: E402
from facemask.metrics import score_photos  # noqa: E402
from facemask.video import DETECTING_FRAMES  # noqa: E402

AIZOO = ROOT.parent / "shared" / "peers" / "aizoo" / "face_mask_detection.tflite"


def aizoo_anchors() -> np.ndarray:
    """(5972, 4) anchors x0, y0, x1, y1 in [0, 1], in the order of the model's outputs (its README)."""
    anchors = []
    for cells, sizes in zip((33, 17, 9, 5, 3), ((0.04, 0.056), (0.08, 0.11), (0.16, 0.22), (0.32, 0.45),
                                                (0.64, 0.72)), strict=True):
        centre = (np.arange(cells) + 0.5) / cells
        cx, cy = np.meshgrid(centre, centre)  # cells row by row
        shapes = [(size, 1.0) for size in sizes] + [(sizes[0], ratio) for ratio in (0.62, 0.42)]
        half = np.array([[size * np.sqrt(ratio) / 2, size / np.sqrt(ratio) / 2] for size, ratio in shapes])
        centres = np.stack([cx.ravel(), cy.ravel()], axis=1)[:, None, :]  # (cells², 1, 2)
        anchors.append(np.concatenate([centres - half, centres + half], axis=2).reshape(-1, 4))
    return np.concatenate(anchors)


class Aizoo:
    """AIZOO's SSD in LiteRT: `detect(rgb)` -> (box in pixels, confidence, P(mask), P(no-mask)) per face."""

    def __init__(self, threads: int, min_score: float = 0.5):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(str(AIZOO), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = {o["name"]: o["index"] for o in self.interpreter.get_output_details()}
        self.boxes_out, self.scores_out = outputs["loc_branch_concat_1/concat"], outputs["cls_branch_concat_1/concat"]
        self.anchors = aizoo_anchors()
        self.min_score = min_score

    def detect(self, rgb: np.ndarray) -> list[tuple]:
        height, width = rgb.shape[:2]
        small = np.asarray(Image.fromarray(rgb).resize((260, 260), Image.BILINEAR), dtype=np.float32) / 255
        self.interpreter.set_tensor(self.input, small[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.boxes_out)[0] * np.array([0.1, 0.1, 0.2, 0.2])
        scores = self.interpreter.get_tensor(self.scores_out)[0]
        anchors = self.anchors
        size = anchors[:, 2:] - anchors[:, :2]
        centre = (anchors[:, :2] + anchors[:, 2:]) / 2 + raw[:, :2] * size
        size = np.exp(raw[:, 2:]) * size
        confidence = scores.max(axis=1)
        keep = np.flatnonzero(confidence >= self.min_score)
        boxes = np.concatenate([centre[keep] - size[keep] / 2, centre[keep] + size[keep] / 2], axis=1)
        boxes = boxes.clip(0, 1) * np.array([width, height, width, height])
        chosen = non_maximum_suppression(boxes, confidence[keep], 0.4)
        boxes, kept = boxes[chosen], keep[chosen]
        return [(tuple(box), float(confidence[i]), float(scores[i, 0]), float(scores[i, 1]))
                for box, i in zip(boxes, kept, strict=True)]


class Ours:
    """CenterFace (ONNX Runtime) + a classifier from facemask.classifier: the path phase 2 serves."""

    def __init__(self, classifier, threads: int, max_side: int):
        self.finder = FaceMaskDetector(None, face_detector=CenterFaceDetector(threads=threads), max_side=max_side)
        self.classifier = classifier

    def detect(self, image: Image.Image) -> list[tuple]:
        faces = self.finder.find_faces(image)
        if not faces:
            return []
        rows = self.classifier.predict_proba([crop_face(image, box, self.finder.margin) for box, _ in faces])
        mask, no_mask = self.classifier.class_names.index("mask"), self.classifier.class_names.index("no-mask")
        return [(box, score, float(row[mask]), float(row[no_mask])) for (box, score), row in zip(faces, rows,
                                                                                              strict=True)]


class AtOnce:
    """`Ours` as facemask.video runs it: DETECTING_FRAMES frames in detection at once, each in a thread of its
    own. `detect` gives the faces of the frame it was given DETECTING_FRAMES - 1 calls before (none at first),
    so that frames counted per second are the video path's."""

    def __init__(self, ours: Ours, at_once: int = DETECTING_FRAMES):
        self.ours, self.at_once = ours, at_once
        self.pool = ThreadPoolExecutor(at_once)
        self.pending: deque[Future] = deque()

    def detect(self, image: Image.Image) -> list[tuple]:
        self.pending.append(self.pool.submit(self.ours.detect, image))
        return self.pending.popleft().result() if len(self.pending) >= self.at_once else []


def as_found(detections: list[tuple]) -> list[SimpleNamespace]:
    """Detections as facemask.metrics reads them; AIZOO's class scores stand for the probabilities."""
    found = []
    for box, score, p_mask, p_no_mask in detections:
        total = p_mask + p_no_mask or 1.0
        found.append(SimpleNamespace(box=box, score=score, p_mask=p_mask / total, p_no_mask=p_no_mask / total,
                                     label="mask" if p_mask >= p_no_mask else "no-mask"))
    return found


def speed(runners: dict, frames: list[Image.Image], rounds: int, seconds: float) -> None:
    arrays = [np.asarray(f) for f in frames]
    times, cpu = defaultdict(list), defaultdict(list)
    faces = {}
    for _ in range(rounds):
        for name, (detect, takes_array) in runners.items():
            inputs = arrays if takes_array else frames
            detect(inputs[0])
            count, found, started, cpu_started = 0, 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - started < seconds or count < len(inputs):
                found += len(detect(inputs[count % len(inputs)]))
                count += 1
            times[name].append(count / (time.perf_counter() - started))
            cpu[name].append(1000 * (time.process_time() - cpu_started) / count)
            faces[name] = found / count
    print(f"\n== Speed: as far as the detections, {len(frames)} crowd frames 640x480, {rounds} rounds: frames/s, "
          "best round and median; CPU ms per frame (every thread), median; ratios to AIZOO's at the same threads")
    for name, values in times.items():
        peer = f"AIZOO TFLite {name.split(' ')[-1] if name.startswith('AIZOO') else name.split('ORT ')[1][:2]}"
        best, peer_best = max(values), max(times[peer])
        cpu_ms, peer_cpu = statistics.median(cpu[name]), statistics.median(cpu[peer])
        print(f"  {name:60s} {best:6.1f} / {statistics.median(values):6.1f} frames/s ({best / peer_best:4.2f}x), "
              f"CPU {cpu_ms:5.1f} ms ({peer_cpu / cpu_ms:4.2f}x), {faces[name]:.1f} faces/frame")


def quality(truth: dict, model_path: Path, max_side: int) -> None:
    photos = {n: load_image(DATA / "images" / n) for n in truth}
    framed = {n: as_frame(photos[n], truth[n]) for n in truth}
    print(f"\n== Quality on the {len(truth)} TEST photos ({sum(map(len, truth.values()))} faces), facemask.metrics")
    aizoo = Aizoo(threads=2, min_score=0.05)  # low cut-off: the whole precision-recall curve for the AP
    classifier = load_classifier(model_path)
    ours_photo = Ours(classifier, threads=2, max_side=1024)
    ours_frame = Ours(classifier, threads=2, max_side=max_side)
    settings = [
        ("AIZOO, photo as is", 0.5, {n: as_found(aizoo.detect(np.asarray(p))) for n, p in photos.items()}, truth),
        ("AIZOO, photo as a 640 px frame", 0.5, {n: as_found(aizoo.detect(np.asarray(f))) for n, (f, _) in
                                                 framed.items()}, {n: t for n, (_, t) in framed.items()}),
        (f"ours ({model_path.name}), photo as `evaluate photos` sees it", 0.4,
         {n: as_found(ours_photo.detect(p)) for n, p in photos.items()}, truth),
        (f"ours ({model_path.name}), 640 px frame, faces sought at {max_side} px", 0.4,
         {n: as_found(ours_frame.detect(f)) for n, (f, _) in framed.items()}, {n: t for n, (_, t) in framed.items()}),
    ]
    for label, threshold, found, faces in settings:
        scores = score_photos(found, faces, threshold)
        print(f"  {label:58s} recall@0.5 {scores['recall50']:.3f}, precision {scores['precision50']:.3f} "
              f"(at {threshold}); AP mask {scores['ap50']['mask']:.3f}, no-mask {scores['ap50']['no-mask']:.3f}, "
              f"mAP@0.5 {scores['map50']:.3f}")


def speed_classifier(folder: Path):
    """The compact-like net of classify_bench with random weights, exported to ONNX (speed only)."""
    from classify_bench import build_compact_like

    from facemask.conversion import export_onnx
    from facemask.models import save_model

    model = build_compact_like()
    save_model(model, folder / "compact-random.keras")  # its sidecar, shared with the export
    export_onnx(model, folder / "compact-random.onnx", None, None)
    return folder / "compact-random.onnx"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a trained classifier (.keras/.onnx/.tflite), "
                        "scored on the test photos")
    parser.add_argument("--speed-model", type=Path, default=None, help="the classifier timed (default: compact-like, "
                        "random weights, ONNX)")
    parser.add_argument("--max-side", type=int, default=320, help="ours: faces sought on a copy this large")
    parser.add_argument("--speed-sides", type=int, nargs="+", default=[320, 384, 448],
                        help="ours, timed: faces sought on copies this large")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    truth = read_truth(DATA / "train.csv")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    if not args.skip_speed:
        with tempfile.TemporaryDirectory(prefix="peer_bench_") as folder:
            timed = args.speed_model or speed_classifier(Path(folder))
            runners = {}
            for threads in (2, 1):
                aizoo = Aizoo(threads)
                runners[f"AIZOO TFLite {threads}t"] = (aizoo.detect, True)
                for side in args.speed_sides:
                    ours = Ours(load_classifier(timed), threads, side)
                    runners[f"ours CenterFace ORT {threads}t S={side} + {timed.name}"] = (ours.detect, False)
                    if threads > 1:  # the video path's way: a frame per thread
                        runners[f"ours CenterFace ORT {threads}t S={side}, {DETECTING_FRAMES} frames at once"] = (
                            AtOnce(ours).detect, False)
            speed(runners, crowd_frames(truth), args.rounds, args.seconds)
    if args.model:
        splits = split_of_photos(DATA / "images", DATA / "train.csv")
        quality({n: faces for n, faces in truth.items() if splits.get(n) == "test"}, args.model, args.max_side)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
