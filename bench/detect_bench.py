"""Benchmark: detection quality on the real photos, and end-to-end video throughput.

    python bench/detect_bench.py --model models/scratch.keras [--data ../shared/datasets/kaggle-format]
                                 [--limit N] [--seconds 5] [--rounds 3]
                                 [--skip-quality] [--skip-speed] [--random-weights]

CenterFace (the default face detector) and MTCNN side by side, in one run. Quality, on the
validation photos of split.py's own split (default seed, 80/10/10) and on every photo and box of
kaggle-format (train.csv's four number columns are xmin, ymin, xmax, ymax whatever its header says;
face_with_mask -> mask, face_no_mask -> no-mask, and face_with_mask_incorrect -> no-mask, since a
mask worn under the nose does not protect), with face detection's milliseconds per photo:

- face recall and precision at IoU 0.5, class-agnostic, with every face the detector returns and at
  its served threshold; recall for faces at least 20 px on both sides, and at IoU 0.3;
- mask/no-mask accuracy on the faces matched, and the classifier alone on the labelled boxes;
- average precision at IoU 0.5 per class (each face detection scored detector score x P(class),
  VOC all-point interpolation) and their mean, mAP@0.5.

Speed, on two 640x480 clips (written to a temporary folder, deleted after): one panned across real
photos with several faces each, one across the astronaut (one face, as from a webcam). End-to-end
frames per second of `annotate_video` (decode, detect, classify, draw, encode) for both detectors
at two detection sizes, their ratios, a stage-by-stage breakdown, and batched against one-face-at-a-time
classification measured side by side in the same run. Rounds alternate, so that other work on
the machine slows both sides alike.
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import imageio.v2 as imageio  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data as skimage_data  # noqa: E402

from facemask import CLASS_NAMES  # noqa: E402
from facemask.annotations import read_truth  # noqa: E402
from facemask.classifier import predict_proba  # noqa: E402
from facemask.detection import FaceMaskDetector, draw_detections  # noqa: E402
from facemask.detectors import CenterFaceDetector, MTCNNFaceDetector  # noqa: E402
from facemask.images import crop_face, load_image, to_model_input  # noqa: E402
from facemask.metrics import SMALL_FACE  # noqa: E402
from facemask.metrics import score_photos as score_photos_package  # noqa: E402
from facemask.models import load_model  # noqa: E402
from facemask.video import annotate_video  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from calibrate_boxes import split_of_photos  # noqa: E402  (split.py's own split, for the valid photos)

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "kaggle-format"
ANCHORS = "YOLOv8m 0.91, Faster R-CNN 0.865, YOLOv5s 0.76"


# --- quality -------------------------------------------------------------------------------------

def detect_photos(detector: FaceMaskDetector, photos: dict[str, Image.Image]) -> tuple[dict[str, list], float]:
    """Every photo's detections (all faces the detector returns), and the face detector's ms per photo."""
    found, detecting = {}, 0.0
    for name, photo in photos.items():
        started = time.perf_counter()
        faces = detector.find_faces(photo)
        detecting += time.perf_counter() - started
        found[name] = detector.classify(photo, faces)
    return found, 1000 * detecting / max(len(photos), 1)


def score_photos(label: str, found: dict[str, list], truth: dict, threshold: float) -> None:
    """The package's photo scores (facemask.metrics, as `evaluate photos` reports them) on these photos."""
    print(f"  {label} ({len(truth)} photos, {sum(map(len, truth.values()))} faces):")
    for min_score in (0.0, threshold):  # every face the detector returns, then the served threshold
        scores = score_photos_package(found, truth, min_score)
        print(f"    score >= {min_score:.2f}: recall@0.5 {scores['recall50']:.3f} "
              f"({scores['matched']}/{scores['faces']}), "
              f"precision@0.5 {scores['precision50']:.3f} ({scores['matched']}/{scores['detections']}), "
              f"faces >= {SMALL_FACE} px {scores['recall50_large']:.3f}, recall@0.3 {scores['recall30']:.3f}; "
              f"accuracy on matched {scores['accuracy_matched']:.3f}")
    aps = scores["ap50"]
    print(f"    AP@0.5: mask {aps['mask']:.3f}, no-mask {aps['no-mask']:.3f}; mAP@0.5 {scores['map50']:.3f}")


def classifier_on_labelled_boxes(model, photos: dict[str, Image.Image], truth: dict, margin: float) -> None:
    crops, labels = [], []
    for name, faces in truth.items():
        for face in faces:
            crops.append(crop_face(photos[name], face.box, margin))
            labels.append(face.label)
    probabilities = predict_proba(model, crops)
    predicted = np.where(probabilities[:, 0] >= probabilities[:, 1], "mask", "no-mask")
    labels = np.asarray(labels)
    per_class = ", ".join(f"{c} {np.mean(predicted[labels == c] == c):.3f} (n={np.sum(labels == c)})"
                          for c in CLASS_NAMES)
    print(f"  classifier alone on the {len(labels)} labelled boxes (margin {margin}): accuracy "
          f"{np.mean(predicted == labels):.3f}; per class: {per_class}")


def quality(model, class_names, data: Path, limit: int | None) -> None:
    truth = read_truth(data / "train.csv")  # face_with_mask_incorrect as no-mask, as `evaluate photos` reads it
    names = sorted(truth)[:limit]
    truth = {name: truth[name] for name in names}
    photos = {name: load_image(data / "images" / name) for name in names}
    splits = split_of_photos(data / "images", data / "train.csv")
    valid = {name: faces for name, faces in truth.items() if splits.get(name) == "valid"}
    print(f"\n== Quality on {data} ({len(names)} photos, {sum(map(len, truth.values()))} faces; "
          "face_with_mask_incorrect counted as no-mask) ==")
    print(f"Public anchors, mAP@0.5 on these andrewmvd photos: {ANCHORS}. Those are detectors TRAINED on these")
    print("photos; ours are general face detectors + a classifier. 'valid' = the validation photos of split.py's")
    print("own split (default seed, 80/10/10), where the box calibration was checked (fitted on its train photos).")
    classifier_on_labelled_boxes(model, photos, truth, margin=0.1)
    settings = [  # label, face detector
        ("CenterFace as served (upscaled to 640 px at most 1.5x, calibrated boxes)", CenterFaceDetector()),
        ("CenterFace without upscaling", CenterFaceDetector(upscale=1.0)),
        ("MTCNN as shipped (min_face_size 20, stage thresholds 0.6/0.7/0.8, calibrated boxes)", MTCNNFaceDetector()),
    ]
    figures = {}
    for label, face_detector in settings:
        detector = FaceMaskDetector(model, class_names, face_detector=face_detector, face_threshold=0.0)
        detector.find_faces(next(iter(photos.values())))  # warm up (graph tracing)
        found, ms_per_photo = detect_photos(detector, photos)
        figures[label] = ms_per_photo
        print(f"{label}: face detection {ms_per_photo:.1f} ms/photo (photos up to 1024 px, one process); "
              f"served threshold {face_detector.threshold}")
        score_photos("valid photos", {n: found[n] for n in valid}, valid, face_detector.threshold)
        score_photos("all photos", found, truth, face_detector.threshold)
    centerface, mtcnn = figures[settings[0][0]], figures[settings[2][0]]
    print(f"face detection time per photo: CenterFace {centerface:.1f} ms, MTCNN {mtcnn:.1f} ms "
          f"(CenterFace/MTCNN {centerface / mtcnn:.2f}x)")


# --- speed ---------------------------------------------------------------------------------------

def write_clip(path: Path, pictures: list[Image.Image], seconds: float, fps: int = 25,
               size: tuple[int, int] = (640, 480)) -> int:
    """A clip panning across each picture in turn (each enlarged to 110% of the frame's cover size)."""
    width, height = size
    frames_per_picture = round(seconds * fps / len(pictures))
    with imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                            macro_block_size=1, ffmpeg_log_level="error") as writer:
        for picture in pictures:
            scale = 1.1 * max(width / picture.width, height / picture.height)
            pixels = np.asarray(picture.resize((round(picture.width * scale), round(picture.height * scale)),
                                               Image.BICUBIC))
            for i in range(frames_per_picture):
                x = round(i * (pixels.shape[1] - width) / max(frames_per_picture - 1, 1))
                y = round(i * (pixels.shape[0] - height) / max(frames_per_picture - 1, 1))
                writer.append_data(pixels[y: y + height, x: x + width])
    return frames_per_picture * len(pictures)


def predict_proba_with_predict(model, images, batch_size: int = 32) -> np.ndarray:
    """The same batch through `model.predict`, as predict_proba did before: the per-call set-up it saves."""
    batch = to_model_input(images, tuple(model.input_shape[1:3]))
    return np.asarray(model.predict(batch, batch_size=batch_size, verbose=0), dtype=np.float32)


def end_to_end(clip: Path, out: Path, detector: FaceMaskDetector) -> tuple[float, float]:
    """Frames per second of the whole annotate_video call, and faces found per frame."""
    detector.detect(Image.new("RGB", (640, 480)))  # warm up: graph tracing happens once per process
    started = time.perf_counter()
    stats = annotate_video(clip, out, detector, max_side=detector.max_side)
    return stats["frames"] / (time.perf_counter() - started), stats["faces"] / stats["frames"]


def stage_breakdown(clip: Path, out: Path, detector: FaceMaskDetector) -> list:
    """Milliseconds per frame for each stage, run one after the other on the same frames."""
    started = time.perf_counter()
    reader = imageio.get_reader(clip, format="FFMPEG")
    frames = [Image.fromarray(frame) for frame in reader]
    reader.close()
    timings = {"decode": time.perf_counter() - started}
    started = time.perf_counter()
    faces = [detector.find_faces(frame) for frame in frames]
    timings["detect faces"] = time.perf_counter() - started
    started = time.perf_counter()
    detections = [detector.classify(frame, found) for frame, found in zip(frames, faces, strict=True)]
    timings["crop + classify (predict_proba)"] = time.perf_counter() - started
    started = time.perf_counter()
    drawn = [np.asarray(draw_detections(frame, found)) for frame, found in zip(frames, detections, strict=True)]
    timings["draw"] = time.perf_counter() - started
    started = time.perf_counter()
    with imageio.get_writer(out, format="FFMPEG", fps=25, codec="libx264", pixelformat="yuv420p",
                            macro_block_size=1, ffmpeg_log_level="error") as writer:
        for frame in drawn:
            writer.append_data(frame)
    timings["encode"] = time.perf_counter() - started
    stages = ", ".join(f"{name} {1000 * seconds / len(frames):.1f}" for name, seconds in timings.items())
    print(f"    stage by stage (ms/frame): {stages}")
    crops = [[crop_face(frame, box, detector.margin) for box, _ in found] for frame, found in zip(frames, faces,
                                                                                                 strict=True)]
    return [c for c in crops if c]


def batched_vs_single(model, crops_per_frame: list, rounds: int = 3) -> None:
    """All faces of a frame in one call against one call per face, same crops, alternating rounds."""
    ways = {
        "batched": lambda crops: predict_proba(model, crops),
        "one face at a time": lambda crops: [predict_proba(model, [c]) for c in crops],
        "batched through model.predict": lambda crops: predict_proba_with_predict(model, crops),
    }
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for name, way in ways.items():
            started = time.perf_counter()
            for crops in crops_per_frame:
                way(crops)
            times[name].append((time.perf_counter() - started) / len(crops_per_frame))
    median = {name: statistics.median(t) for name, t in times.items()}
    faces = sum(map(len, crops_per_frame)) / len(crops_per_frame)
    print(f"  classification, {len(crops_per_frame)} frames with faces, {faces:.1f} faces/frame, median of {rounds} "
          "rounds (ms/frame): " + ", ".join(f"{k} {1000 * v:.1f}" for k, v in median.items()))
    print(f"  batched is {median['one face at a time'] / median['batched']:.2f}x faster than one face at a time")
    print(f"  predict_proba (predict_on_batch) is {median['batched through model.predict'] / median['batched']:.2f}x "
          "faster than model.predict for one frame's batch")


def speed(model, class_names, data: Path, seconds: float, rounds: int) -> None:
    truth = read_truth(data / "train.csv")  # face_with_mask_incorrect as no-mask, as `evaluate photos` reads it
    crowd = [load_image(data / "images" / name) for name in sorted(truth) if len(truth[name]) >= 3][:5]
    single = [Image.fromarray(skimage_data.astronaut()).crop((0, 0, 512, 384))]  # 4:3, her face stays in view
    with tempfile.TemporaryDirectory(prefix="detect_bench_") as folder:
        clips = {"crowd": Path(folder) / "crowd.mp4", "single": Path(folder) / "single.mp4"}
        frames = write_clip(clips["crowd"], crowd, seconds)
        write_clip(clips["single"], single, seconds)
        print(f"\n== Video throughput on 640x480 clips of {frames} frames at 25 fps ({seconds:g} s): 'crowd' pans "
              "across 5 real photos with 3+ faces each, 'single' across the astronaut (one face, webcam-like); "
              f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start ==")
        print("end-to-end = decode, detect, classify, draw, encode (annotate_video, detector warmed up), median of "
              f"{rounds} rounds taken in turn. 'copy 320' = faces looked for on a 320x240 copy (the video default; "
              "CenterFace does not enlarge a copy shrunk for speed).")
        settings = [  # clip, label, FaceMaskDetector options, face detector
            ("crowd", "CenterFace, copy 320", dict(max_side=320), CenterFaceDetector()),
            ("crowd", "CenterFace, full 640x480", dict(max_side=640), CenterFaceDetector()),
            ("crowd", "MTCNN, copy 320", dict(max_side=320), MTCNNFaceDetector()),
            ("crowd", "MTCNN, full 640x480", dict(max_side=640), MTCNNFaceDetector()),
            ("single", "CenterFace, copy 320", dict(max_side=320), CenterFaceDetector()),
            ("single", "CenterFace, full 640x480", dict(max_side=640), CenterFaceDetector()),
            ("single", "MTCNN, copy 320", dict(max_side=320), MTCNNFaceDetector()),
            ("single", "MTCNN, full 640x480", dict(max_side=640), MTCNNFaceDetector()),
        ]
        detectors = [FaceMaskDetector(model, class_names, face_detector=face_detector, **options)
                     for _, _, options, face_detector in settings]
        results: dict[int, list[float]] = defaultdict(list)
        faces_per_frame = {}
        for _ in range(rounds):
            for index, (clip, _, _, _) in enumerate(settings):
                fps, faces_per_frame[index] = end_to_end(clips[clip], Path(folder) / "out.mp4", detectors[index])
                results[index].append(fps)
        fps = {settings[i][:2]: statistics.median(values) for i, values in results.items()}
        for index, (clip, label, _, _) in enumerate(settings):
            print(f"[{clip}] {label}: {fps[clip, label]:.2f} frames/s end-to-end "
                  f"({faces_per_frame[index]:.2f} faces/frame)")
        for clip in clips:
            ratios = ", ".join(f"{size} {fps[clip, f'CenterFace, {size}'] / fps[clip, f'MTCNN, {size}']:.2f}x"
                               for size in ("copy 320", "full 640x480"))
            print(f"[{clip}] CenterFace / MTCNN frames/s: {ratios}")
        crops = None
        for index in (0, 2):
            print(f"  [{settings[index][0]}] {settings[index][1]}:")
            found_crops = stage_breakdown(clips[settings[index][0]], Path(folder) / "stages.mp4", detectors[index])
            crops = crops or found_crops
        batched_vs_single(model, crops, rounds)
        print(f"load average at end {os.getloadavg()[0]:.1f}; targets: 15 frames/s crowd, 25 single face")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "scratch.keras")
    parser.add_argument("--random-weights", action="store_true", help="an untrained scratch CNN instead of --model")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos for quality")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the generated clips")
    parser.add_argument("--rounds", type=int, default=3, help="speed rounds, taken in turn; the median is reported")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args(argv)
    if not (args.data / "train.csv").is_file():
        print(f"error: {args.data}: no train.csv (the real data folder is needed)", file=sys.stderr)
        return 2
    if args.random_weights:
        from facemask.models import build_scratch_cnn

        model, class_names = build_scratch_cnn(), ["mask", "no-mask"]
        print("MODEL: scratch CNN with RANDOM weights (untrained): speed figures are valid, quality figures are not")
    else:
        try:
            model, class_names = load_model(args.model)
        except (OSError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"MODEL: {args.model} ({model.name}, {model.count_params():,} parameters)")
    if not args.skip_quality:
        quality(model, class_names, args.data, args.limit)
    if not args.skip_speed:
        speed(model, class_names, args.data, args.seconds, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
