"""How long each command takes to stop after SIGTERM (or SIGINT), and what it leaves behind.

    python bench/stop_bench.py --model models/scratch.keras [--rounds 3] [--baseline ../main] [--only split ...]

Scenarios (real processes, real signals; the time is from the signal to the exit):

- split-300k: `split.py` on one real sample photo with 300,000 face boxes, stopped 2 s into cutting;
- split-force: `split.py --force` over a previous output of 40,000 files (`--old-files`; on disk:
  synced), stopped as the previous output is set aside, i.e. while it is being deleted;
- detect-video: `python -m facemask.detect` on a 3,000-frame clip, stopped 1 s after its partial file appears;
- train: `python -m facemask.train --arch scratch` on the generated sample, stopped mid-epoch 2;
- app-idle, app-video: `python -m facemask.app` at rest, and annotating a 60 s video;
- remove-tree: facemask.remove_tree against shutil.rmtree on 30,000 synced files (no signal).

With `--baseline DIR` (another checkout, e.g. the main branch) each scenario runs there too, rounds
alternating, so both see the same load. A run still going `--cap` seconds after the signal is killed
and shown as `>cap`. "left" counts the names (hidden ones included) beside the output that were not
there before, or a previous output no longer whole.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE_PHOTO = ROOT / "sample" / "images" / "maksssksksss113.jpg"


def python(root: Path, *args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    environment = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "GRADIO_ANALYTICS_ENABLED": "False",
                                "HF_HUB_OFFLINE": "1"} | (env or {})
    return subprocess.Popen([sys.executable, *args], cwd=cwd or root, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_until(condition: Callable[[], bool], process: subprocess.Popen, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate()
            raise RuntimeError(f"the condition never came (exit {process.returncode}): {err[-1500:]}")
        time.sleep(0.02)


def signal_and_time(process: subprocess.Popen, cap: float, signum: int = signal.SIGTERM) -> tuple[float, int]:
    """(seconds from the signal to the exit, exit code); inf and -9 when killed at `cap`."""
    sent = time.monotonic()
    process.send_signal(signum)
    try:
        process.communicate(timeout=cap)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return float("inf"), -9
    return time.monotonic() - sent, process.returncode


def new_names(folder: Path, before: set[str]) -> list[str]:
    return sorted(set(os.listdir(folder)) - before)


# ---------------------------------------------------------------- scenarios


def split_300k(root: Path, work: Path, cap: float, **_) -> tuple[float, int, list[str]]:
    images = work / "images"
    images.mkdir()
    shutil.copy(SAMPLE_PHOTO, images / SAMPLE_PHOTO.name)
    from PIL import Image

    width, height = Image.open(SAMPLE_PHOTO).size
    rng = random.Random(0)
    with open(work / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "x1", "x2", "y1", "y2", "classname"])
        for i in range(300_000):
            x, y, side = rng.randrange(width - 40), rng.randrange(height - 40), rng.randrange(12, 40)
            writer.writerow([SAMPLE_PHOTO.name, x, y, x + side, y + side, ("face_no_mask", "face_with_mask")[i % 2]])
    before = set(os.listdir(work))
    process = python(root, str(root / "split.py"), "images", "train.csv", "80", "10", "10", "--out", "data",
                     "--workers", "2", cwd=work)
    wait_until(lambda: any(work.glob(".data.*.partial/*/*/*.png")), process)
    time.sleep(2)
    seconds, code = signal_and_time(process, cap)
    return seconds, code, new_names(work, before)


def split_force(root: Path, work: Path, cap: float, old_files: int = 40_000, **_) -> tuple[float, int, list[str]]:
    old = work / "data"
    for i in range(max(1, old_files // 1000)):
        (old / f"d{i:02d}").mkdir(parents=True)
        for j in range(1000):
            (old / f"d{i:02d}" / f"{j}.png").write_bytes(b"old")
    os.sync()
    process = python(root, str(root / "split.py"), str(ROOT / "sample" / "images"), str(ROOT / "sample" / "train.csv"),
                     "70", "15", "15", "--out", "data", "--force", "--workers", "1", cwd=work)
    wait_until(lambda: any(p.name.startswith(".data.") and (p / "d00").exists() for p in work.iterdir()), process)
    seconds, code = signal_and_time(process, cap)
    left = [name for name in os.listdir(work) if name != "data"]
    return seconds, code, left


def detect_video(root: Path, work: Path, cap: float, model: Path, **_) -> tuple[float, int, list[str]]:
    from tests.conftest import write_plain_clip

    clip = write_plain_clip(work / "clip.mp4", frames=3000, fps=25, size=(320, 240))
    process = python(root, "-m", "facemask.detect", "--model", str(model), str(clip), "--out", str(work / "out"))
    wait_until(lambda: any((work / "out").glob(".clip_annotated.*.partial.mp4")), process)
    time.sleep(1)
    seconds, code = signal_and_time(process, cap)
    return seconds, code, new_names(work, {"clip.mp4"})


def train(root: Path, work: Path, cap: float, crops: Path, **_) -> tuple[float, int, list[str]]:
    models = work / "models"
    process = python(root, "-m", "facemask.train", "--arch", "scratch", "--data", str(crops), "--out", str(models),
                     "--reports", str(work / "reports"), "--epochs", "50", "--patience", "50", "--batch-size", "8",
                     "--subset", "0.3")
    wait_until(lambda: models.is_dir() and any(models.iterdir()), process)  # epoch 1 checkpointed
    time.sleep(1)
    seconds, code = signal_and_time(process, cap)
    return seconds, code, (os.listdir(models) if models.exists() else []) + (["reports"] if (work / "reports").exists()
                                                                                else [])


def start_app(root: Path, work: Path, model: Path) -> tuple[subprocess.Popen, Path, str]:
    cache = work / "cache"
    cache.mkdir()
    process = python(root, "-m", "facemask.app", "--model", str(model), "--port", "0",
                     env={"GRADIO_TEMP_DIR": str(cache)})
    line = process.stdout.readline()
    if "Serving" not in line:
        process.kill()
        raise RuntimeError(f"the app did not start: {line} {process.communicate()[1][-1500:]}")
    return process, cache, line.split(" on ")[1].split()[0]


def app_idle(root: Path, work: Path, cap: float, model: Path, **_) -> tuple[float, int, list[str]]:
    process, cache, _ = start_app(root, work, model)
    time.sleep(2)
    seconds, code = signal_and_time(process, cap)
    return seconds, code, sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))


def app_video(root: Path, work: Path, cap: float, model: Path, **_) -> tuple[float, int, list[str]]:
    from gradio_client import Client, handle_file

    from tests.conftest import write_plain_clip

    clip = write_plain_clip(work / "long.mp4", frames=1500, fps=25, size=(320, 240))
    process, cache, url = start_app(root, work, model)
    client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    job = client.submit(handle_file(str(clip)), api_name="/detect_video")
    wait_until(lambda: any(getattr(step, "unit", None) == "frames" for step in job.status().progress_data or []),
               process)
    time.sleep(1)
    seconds, code = signal_and_time(process, cap)
    return seconds, code, sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))


SCENARIOS = {"split-300k": split_300k, "split-force": split_force, "detect-video": detect_video, "train": train,
             "app-idle": app_idle, "app-video": app_video}


def remove_tree_rounds(rounds: int) -> None:
    """facemask.remove_tree against shutil.rmtree on 30,000 synced files in 4 folders, rounds alternating."""
    from facemask import remove_tree

    times: dict[str, list[float]] = {"shutil.rmtree": [], "remove_tree": []}
    for _ in range(rounds):
        for name, remove in (("shutil.rmtree", shutil.rmtree), ("remove_tree", remove_tree)):
            with tempfile.TemporaryDirectory() as work:
                tree = Path(work) / "t"
                for i in range(30_000):
                    folder = tree / str(i % 4)
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / f"{i}.png").write_bytes(b"x" * 800)
                os.sync()
                started = time.monotonic()
                remove(tree)
                times[name].append(time.monotonic() - started)
    for name, values in times.items():
        print(f"  {name:<14} median {statistics.median(values):.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    ratio = statistics.median(times["shutil.rmtree"]) / statistics.median(times["remove_tree"])
    print(f"  ratio rmtree/remove_tree: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a saved classifier (detect, app)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cap", type=float, default=60, help="seconds after the signal before a kill")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure side by side")
    parser.add_argument("--only", nargs="*", choices=[*SCENARIOS, "remove-tree"])
    parser.add_argument("--old-files", type=int, default=40_000, help="files of the previous output (split-force)")
    args = parser.parse_args()
    print(f"CPU: {Path('/proc/cpuinfo').read_text().split('model name')[1].split(':')[1].splitlines()[0].strip()}; "
          f"load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    roots = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    chosen = args.only or [*SCENARIOS, "remove-tree"]
    with tempfile.TemporaryDirectory() as shared:
        crops = Path(shared) / "crops"
        if "train" in chosen:
            from facemask import split
            from facemask.sample import make_sample

            make_sample(Path(shared) / "sample", photos=40, seed=0)
            split.main([str(Path(shared) / "sample" / "images"), str(Path(shared) / "sample" / "train.csv"),
                        "70", "15", "15", "--out", str(crops)])
        for name in chosen:
            if name == "remove-tree":
                print("remove-tree:")
                remove_tree_rounds(args.rounds)
                continue
            results: dict[str, list] = {label: [] for label in roots}
            for _ in range(args.rounds):
                for label, root in roots.items():
                    with tempfile.TemporaryDirectory() as work:
                        results[label].append(SCENARIOS[name](root, Path(work), args.cap, model=args.model.resolve(),
                                                              crops=crops, old_files=args.old_files))
            print(f"{name}:")
            for label, runs in results.items():
                times = [seconds for seconds, _, _ in runs]
                shown = ", ".join(f">{args.cap:g}" if t == float("inf") else f"{t:.2f}" for t in times)
                print(f"  {label:<9} stop s: median {statistics.median(times):.2f} ({shown}); exit codes "
                      f"{sorted({code for _, code, _ in runs})}; left: {[left for _, _, left in runs]}")


if __name__ == "__main__":
    main()
