"""Benchmark: crops per second of split.py, one thread against two, and against a naive baseline.

    python bench/split_bench.py [--data ../shared/datasets/kaggle-format] [--repeat 5] [--tmp DIR]

Every side runs end to end in this one process run, on the same photos, into temporary folders:

- split.py, `--workers 1`: each photo decoded once for all its faces, cut in one thread.
- split.py, `--workers 2`: the same with two threads cutting photos at once.
- baseline: the naive way (the photo decoded again for every face, one thread), reusing
  split.py's plan (`facemask.splitting.plan`) so that it writes the same crops.

The outputs are checked byte for byte before any figure is printed. Rounds alternate in order
(forwards, then backwards) so that a machine busy with other work slows every side alike; the
median of the rounds is reported, with the ratios of the medians and of the best rounds (the least
disturbed by other work). CPU time is printed too: it is far less sensitive to a busy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facemask.images import load_image  # noqa: E402
from facemask.split import main as split_main  # noqa: E402
from facemask.split import parse_args  # noqa: E402
from facemask.splitting import plan, save_crop  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "kaggle-format"
RATIOS = ["80", "15", "5"]


def baseline(argv: list[str]) -> None:
    """The same crops as split.py, one thread, the photo decoded again for every face."""
    args = parse_args(argv)
    out = Path(args.out)
    with contextlib.redirect_stderr(io.StringIO()):
        crops = plan(Path(args.images), Path(args.csv), args.ratios, incorrect=args.incorrect, margin=args.margin,
                     min_size=args.min_size, seed=args.seed).crops
    for crop in crops:
        (out / crop.path).parent.mkdir(parents=True, exist_ok=True)
        save_crop(load_image(Path(args.images) / crop.source), crop.box, out / crop.path)


def split_py(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = split_main(argv)
    if code != 0:
        raise SystemExit(f"split.py failed with exit code {code}: {err.getvalue()[-500:]}")


def crop_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def timed(function, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    function(*args)
    return time.perf_counter() - start_wall, time.process_time() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with images/ and train.csv")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds of each")
    parser.add_argument("--tmp", type=Path, default=ROOT, help="where to write the crops (default: the project)")
    args = parser.parse_args()
    if not (args.data / "train.csv").is_file():
        raise SystemExit(f"error: {args.data / 'train.csv'} not found (the real data lives in ../shared/datasets)")
    inputs = [str(args.data / "images"), str(args.data / "train.csv"), *RATIOS]
    sides = {"split.py, 1 thread (decode once)": (split_py, ["--workers", "1"]),
             "split.py, 2 threads (decode once)": (split_py, ["--workers", "2"]),
             "baseline (1 thread, decode per face)": (baseline, [])}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    # Beside the project like split.py's default data/, not in /tmp: on this machine creating
    # small files in /tmp is far slower and would swamp every side's figures.
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix=".split-bench-") as tmp:
        baseline([*inputs, "--out", f"{tmp}/warm-up"])  # fills the page cache for every side
        for n in range(args.repeat):
            for i, (name, (function, extra)) in enumerate(sides.items() if n % 2 == 0 else reversed(sides.items())):
                runs[name].append(timed(function, [*inputs, "--out", f"{tmp}/{n}-{i}", *extra]))
        outputs = [crop_files(Path(tmp) / f"0-{i}") for i in range(len(sides))]
        if any(output != outputs[0] for output in outputs):
            raise SystemExit(f"error: outputs differ ({[len(output) for output in outputs]} files)")
    crops = len(outputs[0])
    print(f"{crops} crops from {args.data}, identical bytes on every side; {os.cpu_count()} cores, "
          f"load average now {os.getloadavg()[0]:.2f} (other work on the machine slows every side)")
    for name, timings in runs.items():
        wall, cpu = statistics.median(r[0] for r in timings), statistics.median(r[1] for r in timings)
        print(f"{name:<38} {crops / wall:7.1f} crops/s wall  {crops / cpu:7.1f} crops/CPU-s  "
              f"(wall: {', '.join(f'{r[0]:.2f}s' for r in timings)})")
    one, two, naive = runs.values()
    for label, slow, fast in (("1 thread over the baseline", naive, one), ("2 threads over 1 thread", one, two)):
        median = statistics.median(r[0] for r in slow) / statistics.median(r[0] for r in fast)
        best = min(r[0] for r in slow) / min(r[0] for r in fast)
        print(f"speed-up, {label}: {median:.2f}x wall-clock, medians (best rounds: {best:.2f}x)")


if __name__ == "__main__":
    main()
