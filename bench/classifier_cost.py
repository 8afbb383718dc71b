"""What one face costs each classifier: weights, multiply-adds and milliseconds, side by side.

    python bench/classifier_cost.py --rounds 5 --seconds 3

Builds the compact CNN (at its default input, 96x96), the original project's scratch CNN (224x224) and VGG16
(224x224, random weights: the cost does not depend on them), counts each one's multiply-adds per face
(`facemask.models.multiply_adds`: convolutions and dense layers), and times `predict_on_batch` as serving
calls it, for a single face (a webcam frame) and a batch of 32 (a crowd), rounds alternating between the
networks so that other work on the machine slows them alike. Prints medians over the rounds and the ratios
to the scratch CNN, with the CPU and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from reproduce import cpu  # noqa: E402

from facemask.models import build_compact, build_scratch_cnn, build_vgg16, multiply_adds  # noqa: E402

BATCHES = (1, 32)


def ms_per_face(model, batch: np.ndarray, seconds: float) -> float:
    """Milliseconds per face of `predict_on_batch` on `batch`, over at least `seconds` (after a warm-up)."""
    model.predict_on_batch(batch)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or calls < 3:
        model.predict_on_batch(batch)
        calls += 1
    return (time.perf_counter() - started) / (calls * len(batch)) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are printed")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per network, batch and round")
    parser.add_argument("--no-vgg16", action="store_true", help="leave VGG16 out (about 0.1 s a face on 2 cores)")
    args = parser.parse_args(argv)
    models = {"compact": build_compact(), "scratch": build_scratch_cnn()}
    if not args.no_vgg16:
        models["vgg16"] = build_vgg16(weights=None)
    rng = np.random.default_rng(0)
    inputs = {name: {size: rng.uniform(0, 255, (size, *model.input_shape[1:])).astype(np.float32)
                     for size in BATCHES} for name, model in models.items()}
    times: dict[tuple[str, int], list[float]] = {}
    for round_ in range(args.rounds):
        order = list(models) if round_ % 2 == 0 else list(reversed(models))
        for name in order:
            for size in BATCHES:
                times.setdefault((name, size), []).append(ms_per_face(models[name], inputs[name][size], args.seconds))
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    print(f"{cpu()}; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}; medians of {args.rounds} rounds")
    print("| network | input | weights | multiply-adds per face | ratio | ms per face, batch 1 | ratio "
          "| ms per face, batch 32 | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = {size: statistics.median(times[("scratch", size)]) for size in BATCHES}
    base_macs = multiply_adds(models["scratch"])
    for name, model in models.items():
        macs = multiply_adds(model)
        cells = [name, "x".join(map(str, model.input_shape[1:3])), f"{model.count_params():,}", f"{macs / 1e6:,.1f} M",
                 f"{macs / base_macs:.3f}"]
        for size in BATCHES:
            ms = statistics.median(times[(name, size)])
            cells += [f"{ms:.2f}", f"{ms / base[size]:.3f}"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
