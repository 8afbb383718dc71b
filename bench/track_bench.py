"""Benchmark: following people across frames, on synthetic clips with known ground-truth tracks.

    python bench/track_bench.py make --model M --out /tmp/track-bench [--clips 3] [--people 30]
    python bench/track_bench.py score /tmp/track-bench [--trackers bytetrack sort ocsort norfair]

`make` renders clips: real faces from the TEST photos of split.py's own split of
../shared/datasets/kaggle-format (80/10/10, default seed, face_with_mask_incorrect as no-mask;
faces at least 24 px, so never a face the classifier trained on), each cut with its forehead and
chin (other annotated faces reaching into the cut blurred out, so that every face in the clip is in
the truth; a face touching another left out) and pasted at 60-110 px high onto a 640x480 background
(a blurred photo: no face in it), moving across the frame at 40-140 px/s, entering and leaving at
the edges, crossing and overlapping each other, about 5 in view at once, at 15 frames/s. The clips
are H.264 MP4 (what a camera sends), read back through facemask.streams, and the face detector
(CenterFace, as the watch runs it) and the classifier run on every frame once; their answers and
the true tracks are saved.

`score` replays them through facemask.tracking with each tracking library, as the watch would:
py-motmetrics' IDF1, identity switches and MOTA (IoU >= 0.5), people counted against the truth,
mask/no-mask counts against the truth, each person's label (at the model's decision threshold,
saved by `make`, as the watch labels) against their face's class, and how often a known face must
be classified (--classify-every 1, 2, 5, 10, 15). It needs only numpy,
motmetrics and the libraries, so Norfair (which pins numpy < 2, unlike TensorFlow) can be scored
from a venv of its own on the same saved detections.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets" / "kaggle-format"
SIZE = (640, 480)
FPS = 15
MIN_FACE = 24  # px in the photo: smaller faces would be enlarged into blur
CUT = 0.35  # of the face's size on every side: forehead, chin and a little background, as a real head has


# --- make ----------------------------------------------------------------------------------------

def test_faces(data: Path) -> list[tuple[object, str]]:
    """(face cut from its photo, class) for the test photos' faces of at least MIN_FACE px."""
    sys.path.insert(0, str(ROOT / "bench"))
    from calibrate_boxes import split_of_photos

    from facemask.annotations import read_truth
    from facemask.images import face_box, load_image

    splits = split_of_photos(data / "images", data / "train.csv")
    faces, hidden, dropped = [], 0, 0
    for name, found in sorted(read_truth(data / "train.csv").items()):
        if splits.get(name) != "test":
            continue
        photo = load_image(data / "images" / name)
        for face in found:
            x0, y0, x1, y1 = face.box
            if min(x1 - x0, y1 - y0) < MIN_FACE:
                continue
            cut = face_box(face.box, CUT, *photo.size)
            # Other annotated faces reaching into the cut would be faces in the clip that the truth does not
            # list (a neighbour's chin at the cut's edge): blurred away, or the face left out when one
            # touches it (first clips: 4 of clip0's 35 tracks at 640 px followed such faces).
            others = [face_box(other.box, 0.15, *photo.size) for other in found if other is not face]
            others = [box for box in others if overlap(box, cut) > 0]
            if any(overlap(box, face.box) > 0 for box in others):
                dropped += 1
                continue
            hidden += len(others)
            # The face box inside the cut, as fractions of it: where the true box lands once pasted.
            inner = ((x0 - cut[0]) / (cut[2] - cut[0]), (y0 - cut[1]) / (cut[3] - cut[1]),
                     (x1 - cut[0]) / (cut[2] - cut[0]), (y1 - cut[1]) / (cut[3] - cut[1]))
            faces.append((blur_boxes(photo, others).crop(cut), inner, face.label))
    print(f"neighbours' faces blurred out of the cuts: {hidden}; faces left out for touching one: {dropped}")
    return faces


def blur_boxes(photo, boxes: list):
    """The photo with these boxes blurred past recognition (a copy; the photo itself untouched)."""
    from PIL import ImageFilter

    if not boxes:
        return photo
    photo = photo.copy()
    for box in boxes:
        box = tuple(round(v) for v in box)
        region = photo.crop(box)
        photo.paste(region.filter(ImageFilter.GaussianBlur(max(region.size) / 3)), box[:2])
    return photo


def plan_people(faces: list, people: int, seconds: float, rng: np.random.Generator) -> list[dict]:
    """Who crosses when: start times spread so that about 5 are in view at once, 30% no-mask."""
    no_mask = [i for i, f in enumerate(faces) if f[2] == "no-mask"]
    mask = [i for i, f in enumerate(faces) if f[2] == "mask"]
    plan = []
    for person in range(people):
        pool = no_mask if rng.random() < 0.3 else mask
        height = rng.uniform(60, 110)
        speed = rng.uniform(40, 140)
        from_left = rng.random() < 0.5
        y = rng.uniform(10, SIZE[1] - height - 10)
        start = (seconds - 8) * person / people + rng.uniform(0, 1)
        plan.append({"id": person + 1, "face": int(rng.choice(pool)), "height": height, "speed": speed,
                     "from_left": from_left, "y": y, "start": start, "wobble": rng.uniform(0, 2 * math.pi)})
    return plan


def render(faces: list, plan: list[dict], seconds: float, background, path: Path) -> list[list]:
    """Write the clip; per frame the true (person id, box) of every face at least half in view."""
    import imageio.v2 as imageio
    from PIL import Image

    truth = []
    scaled = {}
    with imageio.get_writer(path, format="FFMPEG", fps=FPS, codec="libx264", pixelformat="yuv420p",
                            macro_block_size=1, ffmpeg_log_level="error", output_params=["-crf", "23"]) as writer:
        for n in range(round(seconds * FPS)):
            t = n / FPS
            frame = background.copy()
            boxes = []
            for p in plan:
                cut, inner, _ = faces[p["face"]]
                key = p["id"]
                if key not in scaled:
                    width = round(p["height"] * cut.width / cut.height)
                    scaled[key] = cut.resize((width, round(p["height"])), Image.BICUBIC)
                image = scaled[key]
                travelled = (t - p["start"]) * p["speed"]
                x = -image.width + travelled if p["from_left"] else SIZE[0] - travelled
                if travelled < 0 or x > SIZE[0] or x < -image.width:
                    continue
                y = p["y"] + 12 * math.sin(t * 1.5 + p["wobble"])
                frame.paste(image, (round(x), round(y)))
                box = (x + inner[0] * image.width, y + inner[1] * image.height,
                       x + inner[2] * image.width, y + inner[3] * image.height)
                clipped = (max(0, box[0]), max(0, box[1]), min(SIZE[0], box[2]), min(SIZE[1], box[3]))
                if (clipped[2] - clipped[0]) >= 0.5 * (box[2] - box[0]):
                    boxes.append((p["id"], [round(v, 1) for v in clipped]))
            # A face pasted later covers the earlier ones: only the visible part of the covered ones is truth.
            truth.append(visible(boxes))
            writer.append_data(np.asarray(frame))
    return truth


def visible(boxes: list) -> list:
    """Leave out faces more than half covered by a face pasted after them."""
    kept = []
    for i, (pid, box) in enumerate(boxes):
        area = (box[2] - box[0]) * (box[3] - box[1])
        covered = max((overlap(box, other) for _, other in boxes[i + 1:]), default=0.0)
        if covered < 0.5 * area:
            kept.append((pid, box))
    return kept


def overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def detect_clip(path: Path, detector) -> list[dict]:
    """The watch's face detector and classifier on every frame, read back as the watch reads it."""
    from PIL import Image

    from facemask.streams import FrameReader, StreamError, parse_source

    reader = FrameReader(parse_source(str(path)), keep_all=True)
    reader.open(30)
    found = []
    try:
        while True:
            try:
                frame = reader.next_frame(30)
            except StreamError:
                break
            image = Image.fromarray(frame.rgb)
            faces = detector.find_faces(image)
            detections = detector.classify(image, faces)
            found.append({"pts": frame.pts, "boxes": [list(d.box) for d in detections],
                          "scores": [d.score for d in detections], "p_no_mask": [d.p_no_mask for d in detections]})
    finally:
        reader.close()
    return found


def make(args) -> int:
    from PIL import ImageFilter

    from facemask.detection import FaceMaskDetector
    from facemask.images import load_image

    rng = np.random.default_rng(args.seed)
    faces = test_faces(args.data)
    print(f"{len(faces)} test-photo faces of at least {MIN_FACE} px "
          f"({sum(f[2] == 'no-mask' for f in faces)} no-mask)")
    # As the watch looks for faces; every face down to --face-threshold is kept, with its score, so that
    # `score --min-score` can replay any cut-off above it.
    detector = FaceMaskDetector.from_path(args.model, max_side=args.max_side, face_threshold=args.face_threshold)
    args.out.mkdir(parents=True, exist_ok=True)
    photos = sorted((args.data / "images").iterdir())
    for clip in range(args.clips):
        plan = plan_people(faces, args.people, args.seconds, rng)
        backdrop = load_image(photos[int(rng.integers(len(photos)))]).resize(SIZE).filter(ImageFilter.GaussianBlur(12))
        path = args.out / f"clip{clip}.mp4"
        truth = render(faces, plan, args.seconds, backdrop, path)
        started = time.perf_counter()
        detections = detect_clip(path, detector)
        labels = {p["id"]: faces[p["face"]][2] for p in plan}
        # The model's decision threshold goes with its answers: `score` labels people with it, as the watch does.
        (args.out / f"clip{clip}.json").write_text(json.dumps({"truth": truth, "labels": labels,
                                                               "detections": detections, "fps": FPS,
                                                               "threshold": detector.no_mask_threshold}))
        seen = len({pid for boxes in truth for pid, _ in boxes})
        print(f"clip{clip}: {len(truth)} frames, {seen} people, detected in {time.perf_counter() - started:.0f} s")
    return 0


# --- score ---------------------------------------------------------------------------------------

class NorfairTracks:
    """Norfair behind LibraryTracks' two calls, for the comparison only (it pins numpy < 2)."""

    def __init__(self, fps: float, lost_seconds: float):
        import norfair

        self._norfair = norfair
        self._tracker = norfair.Tracker(distance_function="iou", distance_threshold=0.7,
                                        hit_counter_max=max(1, round(lost_seconds * fps)), initialization_delay=0)

    def update(self, boxes, scores, timestamp):
        detections = [self._norfair.Detection(np.asarray(box, dtype=float).reshape(2, 2), data=i)
                      for i, box in enumerate(boxes)]
        active = self._tracker.update(detections)
        index = {id(d): i for i, d in enumerate(detections)}  # a face matched now is its track's last detection
        return [(obj.id, index[id(obj.last_detection)]) for obj in active
                if obj.id is not None and id(obj.last_detection) in index]

    def alive(self):
        return {obj.id for obj in self._tracker.tracked_objects if obj.id is not None and not obj.is_initializing}


def oracle(clip: dict) -> list[dict]:
    """The true faces as a perfect detector and classifier would give them: the tracker alone is scored."""
    return [{"pts": found["pts"], "boxes": [box for _, box in truth], "scores": [0.9] * len(truth),
             "p_no_mask": [float(clip["labels"][str(pid)] == "no-mask") for pid, _ in truth]}
            for truth, found in zip(clip["truth"], clip["detections"], strict=True)]


def replay(clip: dict, name: str, classify_every: int, lost_seconds: float, min_frames: int, min_score: float = 0.0,
           start_score: float = 0.0):
    """The watch's bookkeeping (facemask.tracking) over a clip's saved detections; motmetrics and the events."""
    import motmetrics as mm

    from facemask.tracking import LibraryTracks, PersonTracker

    if name == "norfair":
        tracks = NorfairTracks(clip["fps"], lost_seconds)
    else:
        tracks = LibraryTracks(name, clip["fps"], lost_seconds, start_score)
    people = PersonTracker(tracks, threshold_of(clip), min_frames, classify_every)
    accumulator = mm.MOTAccumulator(auto_id=True)
    events, calls, faces_seen = [], 0, 0
    for n, (truth, found) in enumerate(zip(clip["truth"], clip["oracle" if "oracle" in clip else "detections"],
                                           strict=True)):
        kept = [i for i, score in enumerate(found["scores"]) if score >= min_score]  # the detector's cut-off
        found = {key: [found[key][i] for i in kept] for key in ("boxes", "scores", "p_no_mask")} | {"pts": found["pts"]}
        seen = people.update(found["boxes"], found["scores"], timestamp=found["pts"], wall=n, pts=found["pts"])
        faces_seen += len(seen)
        for person, index in seen:
            if people.due(person):
                people.classified(person, found["p_no_mask"][index])
                calls += 1
        events += people.ended()
        shown = [p for p, _ in seen if p.number]
        distances = iou_distances([b for _, b in truth], [p.box for p in shown])
        accumulator.update([pid for pid, _ in truth], [p.number for p in shown], distances)
    events += people.end_all()
    summary = mm.metrics.create().compute(accumulator, metrics=["idf1", "num_switches", "mota"], name="clip")
    return summary.iloc[0], events, accumulator, calls / max(faces_seen, 1)


def threshold_of(clip: dict) -> float:
    """The decision threshold the clip's classifier is served with (0.5 in clips made before it was saved)."""
    return clip.get("threshold", 0.5)  # the oracle's 0 and 1 fall on the same side of any


def iou_distances(truth: list, boxes: list, min_iou: float = 0.5) -> np.ndarray:
    """1 - IoU between true and tracked boxes (x0, y0, x1, y1), NaN (no match possible) under min_iou.

    motmetrics' own iou_matrix calls np.asfarray, which numpy 2 removed."""
    a = np.asarray(truth, dtype=float).reshape(-1, 4)[:, None]
    b = np.asarray(boxes, dtype=float).reshape(-1, 4)[None]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    union = area_a + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    iou = inter / np.maximum(union, 1e-9)
    return np.where(iou >= min_iou, 1 - iou, np.nan)


def person_labels(events, accumulator) -> dict[int, int]:
    """Each event's person number -> the true person it followed most (from motmetrics' matches)."""
    matches = accumulator.mot_events
    matches = matches[matches.Type.isin(["MATCH", "SWITCH"])]
    best = matches.groupby("HId").OId.agg(lambda ids: ids.value_counts().index[0])
    return {int(h): int(o) for h, o in best.items()}


def score(args) -> int:
    clips = [json.loads(path.read_text()) for path in sorted(args.folder.glob("clip*.json"))
             if not args.only or path.stem in args.only]
    if not clips:
        print(f"error: {args.folder}: no clip*.json (run `make` first)", file=sys.stderr)
        return 1
    if args.oracle:
        for clip in clips:
            clip["oracle"] = oracle(clip)
        print("ORACLE: the true boxes and classes stand for the detector and classifier (the trackers alone)")
    truth_people = sum(len(c["labels"]) for c in clips)
    truth_no_mask = sum(v == "no-mask" for c in clips for v in c["labels"].values())
    print(f"{len(clips)} clips, {sum(len(c['truth']) for c in clips)} frames at {clips[0]['fps']} fps, "
          f"{truth_people} people ({truth_no_mask} no-mask); lost after {args.lost_seconds:g} s, "
          f"a person from {args.min_frames} frames; faces from score {args.min_score:g}, "
          f"tracks started from {args.start_score:g}; no-mask from P(no-mask) "
          f"{', '.join(sorted({f'{threshold_of(c):.3g}' for c in clips}))}")
    for name in args.trackers:
        for every in args.classify_every:
            idf1, switches, mota, people, no_mask, right, labelled, calls, elapsed = [], 0, [], 0, 0, 0, 0, 0.0, 0.0
            for clip in clips:
                started = time.perf_counter()
                metrics, events, accumulator, share = replay(clip, name, every, args.lost_seconds, args.min_frames,
                                                             args.min_score, args.start_score)
                elapsed += time.perf_counter() - started
                idf1.append(metrics["idf1"])
                mota.append(metrics["mota"])
                switches += int(metrics["num_switches"])
                people += len(events)
                no_mask += sum(e.label(threshold_of(clip)) == "no-mask" for e in events)
                calls += share / len(clips)
                truth_of = person_labels(events, accumulator)
                for event in events:
                    if event.number in truth_of:
                        labelled += 1
                        right += event.label(threshold_of(clip)) == clip["labels"][str(truth_of[event.number])]
            frames = sum(len(c["truth"]) for c in clips)
            print(f"{name:9s} classify every {every:2d}: IDF1 {np.mean(idf1):.3f} (min {min(idf1):.3f}), "
                  f"ID switches {switches} ({10 * switches / truth_people:.2f} per 10 people), "
                  f"MOTA {np.mean(mota):.3f}; "
                  f"people {people} vs {truth_people} ({100 * (people - truth_people) / truth_people:+.1f}%), "
                  f"no-mask {no_mask} vs {truth_no_mask} "
                  f"({100 * (no_mask - truth_no_mask) / max(truth_no_mask, 1):+.1f}%), "
                  f"person labels right {right}/{labelled}; faces classified {100 * calls:.0f}%; "
                  f"{1000 * elapsed / frames:.2f} ms/frame tracking")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    making = commands.add_parser("make", help="render clips and run the detector and classifier on them")
    making.add_argument("--model", type=Path, required=True)
    making.add_argument("--out", type=Path, required=True)
    making.add_argument("--data", type=Path, default=DATA)
    making.add_argument("--clips", type=int, default=3)
    making.add_argument("--people", type=int, default=45)
    making.add_argument("--seconds", type=float, default=90.0)
    making.add_argument("--seed", type=int, default=0)
    making.add_argument("--max-side", type=int, default=640, help="the watch's --max-side")
    making.add_argument("--face-threshold", type=float, default=0.1, help="faces kept from this score")
    scoring = commands.add_parser("score", help="replay the saved detections through each tracker")
    scoring.add_argument("folder", type=Path)
    scoring.add_argument("--trackers", nargs="+", default=["bytetrack", "sort", "ocsort", "cbiou", "botsort"])
    scoring.add_argument("--classify-every", type=int, nargs="+", default=[1, 2, 5, 10, 15])
    scoring.add_argument("--lost-seconds", type=float, default=2.0)
    scoring.add_argument("--min-frames", type=int, default=3)
    scoring.add_argument("--min-score", type=float, default=0.0, help="faces under this score dropped")
    scoring.add_argument("--start-score", type=float, default=0.0, help="faces from this score start tracks")
    scoring.add_argument("--oracle", action="store_true", help="the true faces instead of the detector's")
    scoring.add_argument("--only", nargs="+", help="these clips only (clip0...): tune on some, report on others")
    args = parser.parse_args(argv)
    return make(args) if args.command == "make" else score(args)


if __name__ == "__main__":
    sys.exit(main())
