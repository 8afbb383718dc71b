"""Reproduce the README's results table: split by photo, train over several seeds, score test photos.

    python bench/reproduce.py --seeds 0 1 2 --work /tmp/facemask-results                   # the default network
    python bench/reproduce.py --seeds 0 1 2 --arch scratch --work /tmp/facemask-results    # the original project's CNN

Runs exactly the commands the README prints, on `../shared/datasets/kaggle-format`:
1. `split.py` cuts the 325 photos 80/10/10 by photo (seed fixed, `face_with_mask_incorrect`
   counted as no-mask), so no face of a test photo is ever trained on;
2. `python -m facemask.train` trains the network (its defaults, or `--arch`) once per seed on the
   train photos' crops, choosing its epoch and its decision threshold on the valid photos only;
3. `python -m facemask.evaluate crops` scores each model on the test photos' crops, and
   `python -m facemask.evaluate photos` scores detection + classification on the test photos.
Finished steps are skipped (delete the work folder to start again). The last lines print every
figure as the mean and the range over the seeds, with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KAGGLE = ROOT.parent / "shared" / "datasets" / "kaggle-format"
# The split every figure is measured on; bench/calibrate_boxes.py fits the detectors' boxes on its
# train photos, so no test photo informs any setting. Masks worn under the nose count as no mask,
# as the photo evaluation counts them.
SPLIT_ARGS = ("80", "10", "10", "--incorrect", "no-mask")
# (report key path, label) of the figures the README quotes.
CROP_FIGURES = [(("threshold",), "crops: decision threshold"), (("accuracy",), "crops: accuracy"),
                (("per_class", "mask", "recall"), "crops: mask recall"),
                (("no_mask_recall",), "crops: no-mask recall"), (("roc_auc",), "crops: ROC AUC"),
                *[(("by_size", bucket, "accuracy"), f"crops: accuracy, faces {bucket} px")
                  for bucket in ("under 16", "16-31", "32-63", "64 and more")]]
PHOTO_FIGURES = [(("map50",), "photos: mAP@0.5"), (("ap50", "mask"), "photos: AP@0.5 mask"),
                 (("ap50", "no-mask"), "photos: AP@0.5 no-mask"), (("recall50",), "photos: face recall@0.5"),
                 (("precision50",), "photos: face precision@0.5"),
                 (("accuracy_matched",), "photos: accuracy, faces found"),
                 (("true_boxes", "accuracy"), "photos: accuracy, true boxes"),
                 (("true_boxes", "per_class", "mask", "recall"), "photos: mask recall, true boxes"),
                 (("true_boxes", "no_mask_recall"), "photos: no-mask recall, true boxes"),
                 (("photos_per_second",), "photos: photos/s")]


def run(command: list[str], log: Path) -> None:
    """Run one step, its output into `log`; stop with the log's tail if it fails."""
    print("$", " ".join(command), flush=True)
    with open(log, "w") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        sys.exit(f"error: step failed (exit {code}); see {log}:\n" + "".join(log.read_text().splitlines(True)[-15:]))


def cpu() -> str:
    """The CPU's model and its AVX flags: training speed and even the last digits depend on them."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = sorted({word for word in text.split() if word.startswith("avx")})
    return f"{model} ({' '.join(flags) or 'no AVX'})"


def figure(report: dict, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        report = report.get(key) if isinstance(report, dict) else None
    return report if isinstance(report, (int, float)) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--work", type=Path, default=Path("/tmp/facemask-results"), help="folder for every output")
    parser.add_argument("--detector", default=None, help="face detector for the photo scores (default: the default)")
    parser.add_argument("--arch", default=None, help="the network to train (default: python -m facemask.train's)")
    args = parser.parse_args(argv)
    if not KAGGLE.is_dir():
        return f"error: {KAGGLE} not found (the shared real data is not part of a fresh clone)"
    python, work = sys.executable, args.work.resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not (data / "manifest.csv").is_file():
        run([python, "split.py", str(KAGGLE / "images"), str(KAGGLE / "train.csv"), *SPLIT_ARGS,
             "--out", str(data), "--force"], work / "logs" / "split.log")
    detector = ["--detector", args.detector] if args.detector else []
    sys.path.insert(0, str(ROOT))
    from facemask.config import TrainConfig

    arch = args.arch or TrainConfig().arch
    arch_option = ["--arch", args.arch] if args.arch else []
    rows: dict[str, list[float]] = {}
    for seed in args.seeds:
        models, reports = work / f"models-{arch}-seed{seed}", work / f"reports-{arch}-seed{seed}"
        model = models / f"{arch}.keras"
        if not model.is_file():
            run([python, "-m", "facemask.train", *arch_option, "--data", str(data), "--seed", str(seed),
                 "--out", str(models), "--reports", str(reports)], work / "logs" / f"train-{arch}-seed{seed}.log")
        crops = reports / "test-crops_metrics.json"
        if not crops.is_file():
            run([python, "-m", "facemask.evaluate", "crops", "--model", str(model), str(data / "test"),
                 "--reports", str(reports), "--name", "test-crops"], work / "logs" / f"crops-{arch}-seed{seed}.log")
        photos = reports / "test_photos_metrics.json"
        if not photos.is_file():
            run([python, "-m", "facemask.evaluate", "photos", "--model", str(model), str(KAGGLE / "images"),
                 str(KAGGLE / "train.csv"), "--split-manifest", str(data / "manifest.csv"), "--split", "test",
                 "--reports", str(reports), "--name", "test", *detector],
                work / "logs" / f"photos-{arch}-seed{seed}.log")
        for figures, path in ((CROP_FIGURES, crops), (PHOTO_FIGURES, photos)):
            report = json.loads(path.read_text())
            for keys, label in figures:
                value = figure(report, keys)
                if value is not None:
                    rows.setdefault(label, []).append(value)
    print(f"\n{arch}, {len(args.seeds)} seeds ({' '.join(map(str, args.seeds))}), test photos of {KAGGLE}, "
          f"on {cpu()}")
    print(f"{'figure':40}{'mean':>8}{'min':>8}{'max':>8}")
    for label, values in rows.items():
        print(f"{label:40}{statistics.mean(values):8.3f}{min(values):8.3f}{max(values):8.3f}")
    (work / f"summary-{arch}.json").write_text(json.dumps({"cpu": cpu(), "arch": arch, "seeds": args.seeds,
                                                           "figures": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
