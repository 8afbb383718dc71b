"""Benchmark: crops per second of split.py against a one-process, reopen-per-box baseline.

    python bench/split_bench.py [--data ../shared/datasets/kaggle-format] [--repeat 3] [--workers N]

Both sides run end to end in this one process run, on the same photos, into temporary folders:

- split.py: `split.main([...])` with its default workers (all cores): each photo decoded once
  for all its faces, photos cut in parallel.
- baseline: the naive way (one process, the photo opened and decoded again for every box),
  reusing split.py's CSV parsing and crop planning so that it writes the same crops.

The two outputs are checked byte for byte before any figure is printed. Rounds alternate
between the two so that a machine busy with other work slows both alike; the median of the
rounds is reported, the ratio of the medians and that of the best rounds (the least
disturbed by other work). CPU time (this process and its finished workers) is printed too:
it is far less sensitive to a busy machine, and shows the decode-once saving alone.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

import split  # noqa: E402
from facemask import CLASS_NAMES, SPLITS  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "kaggle-format"


def baseline(images_dir: Path, csv_path: Path, out: Path, ratios: list[str], seed: int = split.DEFAULT_SEED) -> None:
    """The same crops as split.py, one process, reopening and decoding the photo for every box."""
    rows = split.read_rows(csv_path)
    faces, _ = split.apply_class_rules(rows, "drop")
    photos, _ = split.inspect_photos(images_dir, list(dict.fromkeys(row.name for row, _ in faces)))
    crops, _ = split.plan_crops(faces, photos, margin=0.0, min_size=0)
    per_photo: dict[str, dict] = {}
    for crop in crops:
        per_photo.setdefault(crop.source, {"mask": 0, "no-mask": 0})[crop.label] += 1
    assignment = split.assign_splits(per_photo, split.parse_ratios(ratios), seed)
    for split_name in SPLITS:
        for label in CLASS_NAMES:
            (out / split_name / label).mkdir(parents=True, exist_ok=True)
    for crop in crops:
        with Image.open(images_dir / crop.source) as image:  # decoded again for every face
            image.load()
            split.save_crop(image, crop.box, out / assignment[crop.source] / crop.label / crop.filename)


def run_split(images_dir: Path, csv_path: Path, out: Path, ratios: list[str], workers: int | None) -> None:
    argv = [str(images_dir), str(csv_path), *ratios, "--out", str(out)]
    argv += ["--workers", str(workers)] if workers else []
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = split.main(argv)
    if code != 0:
        raise SystemExit(f"split.py failed with exit code {code}: {err.getvalue()[-500:]}")


def crop_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.suffix != ".csv"
            and p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with images/ and train.csv")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds of each (default: 3)")
    parser.add_argument("--tmp", type=Path, default=ROOT, help="where to write the crops (default: the project)")
    parser.add_argument("--workers", type=int, default=None, help="split.py workers (default: its own, all cores)")
    args = parser.parse_args()
    images_dir, csv_path, ratios = args.data / "images", args.data / "train.csv", ["80", "15", "5"]
    if not csv_path.is_file():
        raise SystemExit(f"error: {csv_path} not found (the real data lives in ../shared/datasets)")

    split_runs, baseline_runs = [], []
    # Beside the project like split.py's default data/, not in /tmp: on this machine creating
    # small files in /tmp is ten times slower and would swamp both sides' figures.
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix=".split-bench-") as tmp:
        tmp = Path(tmp)
        baseline(images_dir, csv_path, tmp / "warm-up", ratios)  # fills the page cache for both sides
        for n in range(args.repeat):
            split_runs.append(timed(run_split, images_dir, csv_path, tmp / f"split{n}", ratios, args.workers))
            baseline_runs.append(timed(baseline, images_dir, csv_path, tmp / f"baseline{n}", ratios))
        ours, theirs = crop_files(tmp / "split0"), crop_files(tmp / "baseline0")
        crops = len(theirs)
        if ours != theirs:
            raise SystemExit(f"error: outputs differ ({len(ours)} split.py files, {len(theirs)} baseline files)")

    workers = args.workers or len(os.sched_getaffinity(0))
    print(f"{crops} crops from {args.data}, identical bytes on both sides; {os.cpu_count()} cores, "
          f"load average now {os.getloadavg()[0]:.2f} (other work on the machine slows both sides)")
    for name, runs in ((f"split.py ({workers} workers, decode once)", split_runs),
                       ("baseline (1 process, reopen per box)", baseline_runs)):
        wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"{name:<40} {crops / wall:7.1f} crops/s wall  {crops / cpu:7.1f} crops/CPU-s  "
              f"(wall: {', '.join(f'{r[0]:.2f}s' for r in runs)})")
    wall_ratio = statistics.median(r[0] for r in baseline_runs) / statistics.median(r[0] for r in split_runs)
    cpu_ratio = statistics.median(r[1] for r in baseline_runs) / statistics.median(r[1] for r in split_runs)
    best_ratio = min(r[0] for r in baseline_runs) / min(r[0] for r in split_runs)
    print(f"speed-up: {wall_ratio:.2f}x wall-clock, medians (best rounds: {best_ratio:.2f}x; target >= 3x on "
          f"2 cores); {cpu_ratio:.2f}x less CPU time (decoding once, whatever the cores)")


def timed(function, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its finished children) of one call."""
    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    start_wall, start_cpu = time.perf_counter(), cpu()
    function(*args)
    return time.perf_counter() - start_wall, cpu() - start_cpu


if __name__ == "__main__":
    main()
