"""Benchmark: facemask.video's threaded path against the serial loop it replaced.

    python bench/pipeline_bench.py [--model M.onnx] [--rounds 3] [--seconds 5] [--max-side 320]

Every way writes the same annotated H.264 MP4 of two 640x480 clips (bench/detect_bench.py's clip
makers: 'crowd' pans across 5 kaggle-format photos with 3+ faces, 'single' across the astronaut),
with facemask.detection.FaceMaskDetector: CenterFace on ONNX Runtime and a classifier through
facemask.classifier (default: the compact-like net of bench/classify_bench.py with RANDOM weights,
exported to ONNX; speed only). CenterFace runs "per core" (ONNX Runtime's choice, one thread per
core, as served) or on `--threads`.

- serial, per core: decode, detect, classify, draw, encode, one frame after the other, x264 at its
  default preset (medium): the video path before issue 18's phase 2;
- serial + veryfast, per core: the same loop with x264 at `-preset veryfast`;
- annotate_video: what facemask.video runs now (facemask.stages: a reader thread decodes, two frames are
  detected and classified at once, a writer thread draws and encodes; x264 veryfast), per core; "one
  frame at a time" as it ran before two frames at once; with `--threads N`, CenterFace on N threads.

End-to-end frames per second (the clip's frames / wall time, detector warmed up), median of the
rounds, rounds alternating; every output is checked to have every frame.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
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
from facemask.detection import FaceMaskDetector  # noqa: E402
from facemask.detectors import CenterFaceDetector  # noqa: E402
from facemask.images import load_image  # noqa: E402
from facemask.video import annotate_video, open_writer  # noqa: E402


def serial(clip: Path, out: Path, detector: FaceMaskDetector, preset: str | None = None) -> int:
    """The loop facemask.video ran before its threads: each frame decoded, detected, drawn and encoded in turn."""
    reader, writer, frames = imageio.get_reader(clip, format="FFMPEG"), open_writer(out, 25, preset), 0
    try:
        for frame in reader:
            image = Image.fromarray(frame)
            writer.append_data(np.asarray(detector.draw(image, detector.detect(image))))
            frames += 1
    finally:
        reader.close()
        writer.close()
    return frames


class OneAtATime:
    """A detector that does not say it is thread-safe: annotate_video then detects one frame at a time."""

    def __init__(self, detector: FaceMaskDetector):
        self.detect, self.draw, self.max_side = detector.detect, detector.draw, detector.max_side


def shipped(clip: Path, out: Path, detector: FaceMaskDetector) -> int:
    """facemask.video.annotate_video, faces sought at the detector's own size."""
    return annotate_video(clip, out, detector, max_side=detector.max_side)["frames"]


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
    parser.add_argument("--threads", type=int, default=None,
                        help="also annotate_video with CenterFace on this many ONNX Runtime threads")
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
        classifier = load_classifier(args.model)
        # As served (ONNX Runtime's choice of threads, one per core), and on --threads if given.
        detectors = {"per core": FaceMaskDetector(classifier, face_detector=CenterFaceDetector(),
                                                  max_side=args.max_side)}
        if args.threads:
            detectors["given"] = FaceMaskDetector(classifier, face_detector=CenterFaceDetector(threads=args.threads),
                                                  max_side=args.max_side)
        for detector in detectors.values():
            detector.detect(Image.new("RGB", (640, 480)))
        clips = {"crowd": folder / "crowd.mp4", "single": folder / "single.mp4"}
        frames = {"crowd": write_clip(clips["crowd"], crowd, args.seconds),
                  "single": write_clip(clips["single"], single, args.seconds)}
        # name -> (the way, the CenterFace it uses); the first is the video path before issue 18's phase 2.
        ways: dict[str, tuple[Callable, str]] = {
            "serial, per core": (serial, "per core"),
            "serial + veryfast, per core": (lambda *a: serial(*a, preset="veryfast"), "per core"),
            "annotate_video, per core": (shipped, "per core"),
            "annotate_video, one frame at a time": (lambda clip, out, finder: shipped(clip, out, OneAtATime(finder)),
                                                    "per core")}
        if args.threads:
            ways[f"annotate_video, CenterFace on {args.threads} thread(s)"] = (shipped, "given")
        fps, sizes = defaultdict(list), {}
        for _ in range(args.rounds):
            for clip, path in clips.items():
                for name, (way, finder) in ways.items():
                    out = folder / f"out-{clip}-{name.replace(' ', '').replace(',', '-')}.mp4"
                    started = time.perf_counter()
                    done = way(path, out, detectors[finder])
                    fps[clip, name].append(done / (time.perf_counter() - started))
                    sizes[clip, name] = out.stat().st_size
                    assert done == frames[clip] == count_frames(out), (clip, name, done, frames[clip])
        print(f"\n== End to end (decode, detect, classify, draw, encode), 640x480, {args.seconds:g} s clips at 25 fps, "
              f"faces sought at {args.max_side} px, classifier {args.model.name}; median of {args.rounds} rounds")
        for clip in clips:
            base = statistics.median(fps[clip, "serial, per core"])
            for name in ways:
                value = statistics.median(fps[clip, name])
                print(f"  {clip:7s} {name:44s} {value:6.1f} frames/s (best {max(fps[clip, name]):5.1f}; "
                      f"{value / base:4.2f}x the first), {sizes[clip, name] / 1024:.0f} KiB")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
