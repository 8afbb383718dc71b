"""Benchmark: the video path serial (as facemask.video runs it) against a prototype with overlapped stages.

    python bench/pipeline_bench.py [--model M.onnx] [--rounds 3] [--seconds 5] [--max-side 320]

Both write the same annotated H.264 MP4 of two 640x480 clips (bench/detect_bench.py's clip makers:
'crowd' pans across 5 kaggle-format photos with 3+ faces, 'single' across the astronaut), with the
same detector: CenterFace on ONNX Runtime + a classifier through facemask.classifier (default: the
compact-like net of bench/classify_bench.py with RANDOM weights, exported to ONNX; speed only).

- serial: decode, detect, classify, draw, encode, one frame after the other (today's annotate_video);
- threaded: a reader thread decodes into a queue of at most QUEUE frames, the main thread detects and
  classifies, a writer thread draws and encodes; ONNX Runtime, Pillow's resize and the pipes to
  ffmpeg release the GIL, so the two cores both work. Frames stay in order (one writer, FIFO queues).
- serial + veryfast, threaded + veryfast: the same, x264 at `-preset veryfast` instead of its default
  `medium` (ffmpeg's encoder runs in its own process and competes for the same two cores).

End-to-end frames per second (the clip's frames / wall time, detector warmed up), median of the
rounds, rounds alternating; the output files are checked to have every frame.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import imageio.v2 as imageio  # noqa: E402
import numpy as np  # noqa: E402
from centerface_bench import DATA  # noqa: E402
from detect_bench import write_clip  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data as skimage_data  # noqa: E402

from facemask.annotations import read_truth  # noqa: E402
from facemask.classifier import load_classifier  # noqa: E402
from facemask.detection import Detection, FaceMaskDetector, draw_detections  # noqa: E402
from facemask.detectors import CenterFaceDetector  # noqa: E402
from facemask.images import crop_face, load_image  # noqa: E402

QUEUE = 4  # frames waiting between two stages: enough to ride out a slow frame, little memory
END = object()


class FastDetector:
    """Find faces (CenterFace, ONNX Runtime) and classify them in one batch (facemask.classifier)."""

    def __init__(self, classifier, max_side: int, threads: int):
        self.finder = FaceMaskDetector(None, face_detector=CenterFaceDetector(threads=threads), max_side=max_side)
        self.classifier = classifier
        self.mask = classifier.class_names.index("mask")
        self.no_mask = classifier.class_names.index("no-mask")

    def detect(self, image: Image.Image) -> list[Detection]:
        faces = self.finder.find_faces(image)
        if not faces:
            return []
        rows = self.classifier.predict_proba([crop_face(image, box, self.finder.margin) for box, _ in faces])
        return [Detection(box, score, float(row[self.mask]), float(row[self.no_mask]),
                          "mask" if row[self.mask] >= row[self.no_mask] else "no-mask")
                for (box, score), row in zip(faces, rows, strict=True)]


def writer_for(path: Path, preset: str | None):
    extra = ["-preset", preset] if preset else []
    return imageio.get_writer(path, format="FFMPEG", fps=25, codec="libx264", pixelformat="yuv420p",
                              macro_block_size=1, ffmpeg_log_level="error",
                              output_params=["-movflags", "+faststart", *extra])


def serial(clip: Path, out: Path, detector: FastDetector, preset: str | None = None) -> int:
    reader, writer, frames = imageio.get_reader(clip, format="FFMPEG"), writer_for(out, preset), 0
    try:
        for frame in reader:
            image = Image.fromarray(frame)
            writer.append_data(np.asarray(draw_detections(image, detector.detect(image))))
            frames += 1
    finally:
        reader.close()
        writer.close()
    return frames


def threaded(clip: Path, out: Path, detector: FastDetector, preset: str | None = None) -> int:
    """Reader thread -> detect + classify here -> writer thread (draw, encode); the first error is re-raised."""
    decoded: queue.Queue = queue.Queue(QUEUE)
    detected: queue.Queue = queue.Queue(QUEUE)
    errors: list[BaseException] = []
    stop = threading.Event()

    def put(q: queue.Queue, item) -> bool:
        while not stop.is_set():  # never blocks forever: a failed stage sets `stop`
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        reader = imageio.get_reader(clip, format="FFMPEG")
        try:
            for frame in reader:
                if not put(decoded, Image.fromarray(frame)):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)
            stop.set()
        finally:
            reader.close()
            put(decoded, END)

    written = [0]

    def write() -> None:
        writer = writer_for(out, preset)
        try:
            while (item := detected.get()) is not END:
                image, detections = item
                writer.append_data(np.asarray(draw_detections(image, detections)))
                written[0] += 1
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
            stop.set()
        finally:
            writer.close()

    threads = [threading.Thread(target=read, daemon=True), threading.Thread(target=write, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        while not stop.is_set() and (image := decoded.get()) is not END:
            put(detected, (image, detector.detect(image)))
    except BaseException:
        stop.set()
        raise
    finally:
        while threads[1].is_alive():  # the writer drains what is queued, then ends
            try:
                detected.put(END, timeout=0.1)
                break
            except queue.Full:
                continue
        stop.set()  # the reader, if still going (an error here), stops at its next frame
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return written[0]


def count_frames(path: Path) -> int:
    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        return sum(1 for _ in reader)
    finally:
        reader.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="the classifier (default: compact-like, random)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="clip length")
    parser.add_argument("--max-side", type=int, default=320)
    parser.add_argument("--threads", type=int, default=1, help="CenterFace's ONNX Runtime threads")
    args = parser.parse_args()
    truth = read_truth(DATA / "train.csv")
    crowd = [load_image(DATA / "images" / name) for name in sorted(truth) if len(truth[name]) >= 3][:5]
    single = [Image.fromarray(skimage_data.astronaut()).crop((0, 0, 512, 384))]
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="pipeline_bench_") as folder:
        folder = Path(folder)
        if args.model is None:
            from peer_bench import speed_classifier

            args.model = speed_classifier(folder)
        detector = FastDetector(load_classifier(args.model), args.max_side, args.threads)
        detector.detect(Image.new("RGB", (640, 480)))
        clips = {"crowd": folder / "crowd.mp4", "single": folder / "single.mp4"}
        frames = {"crowd": write_clip(clips["crowd"], crowd, args.seconds),
                  "single": write_clip(clips["single"], single, args.seconds)}
        ways: dict[str, Callable] = {"serial": serial, "serial + veryfast": lambda *a: serial(*a, preset="veryfast"),
                                     "threaded": threaded,
                                     "threaded + veryfast": lambda *a: threaded(*a, preset="veryfast")}
        fps, sizes = defaultdict(list), {}
        for _ in range(args.rounds):
            for clip, path in clips.items():
                for name, way in ways.items():
                    out = folder / f"out-{clip}-{name.replace(' ', '')}.mp4"
                    started = time.perf_counter()
                    done = way(path, out, detector)
                    fps[clip, name].append(done / (time.perf_counter() - started))
                    sizes[clip, name] = out.stat().st_size
                    assert done == frames[clip] == count_frames(out), (clip, name, done, frames[clip])
        print(f"\n== End to end (decode, detect, classify, draw, encode), 640x480, {args.seconds:g} s clips at 25 fps, "
              f"faces sought at {args.max_side} px, classifier {args.model.name}; median of {args.rounds} rounds")
        for clip in clips:
            base = statistics.median(fps[clip, "serial"])
            for name in ways:
                value = statistics.median(fps[clip, name])
                print(f"  {clip:7s} {name:22s} {value:6.1f} frames/s (best {max(fps[clip, name]):5.1f}; "
                      f"{value / base:4.2f}x serial), {sizes[clip, name] / 1024:.0f} KiB")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
