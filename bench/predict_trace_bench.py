"""predict_on_batch through one graph traced for any batch size, against Keras' graph traced for the size.

facemask.classifier.trace_for_any_batch_size traces Keras' predict step once with the batch dimension
open, so a model is never traced again for a new batch size (see its docstring). This checks that the
open graph runs as fast as the one Keras traces for a fixed batch size. Two copies of the scratch CNN
(same weights) are timed in alternating calls, so other work on the machine slows both alike; medians
and their ratio per batch size. VGG16 (random weights: speed does not depend on them) with --vgg16.

    python bench/predict_trace_bench.py
    python bench/predict_trace_bench.py --calls 40 --vgg16
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from facemask.classifier import trace_for_any_batch_size  # noqa: E402
from facemask.models import build_scratch_cnn, build_vgg16  # noqa: E402


def median_ms(model, batch: np.ndarray, calls: int, other, other_batch: np.ndarray) -> tuple[float, float]:
    """Median milliseconds of `model.predict_on_batch(batch)` and `other`'s, calls alternating."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(calls):
        for side, (m, x) in enumerate(((model, batch), (other, other_batch))):
            start = time.perf_counter()
            m.predict_on_batch(x)
            times[side].append(time.perf_counter() - start)
    return float(np.median(times[0]) * 1000), float(np.median(times[1]) * 1000)


def compare(name: str, build, sizes: list[int], calls: int) -> None:
    fixed, open_ = build(), build()
    open_.set_weights(fixed.get_weights())
    trace_for_any_batch_size(open_)
    for size in sizes:
        batch = np.random.default_rng(0).uniform(0, 255, (size, 224, 224, 3)).astype(np.float32)
        fixed.make_predict_function(force=True)  # a fresh graph, traced for this size as Keras does at first
        for model in (fixed, open_):  # warm-up: the tracing, and the first run of each graph
            np.testing.assert_allclose(model.predict_on_batch(batch), fixed.predict_on_batch(batch), atol=1e-5)
        fixed_ms, open_ms = median_ms(fixed, batch, calls, open_, batch)
        assert open_.predict_function.experimental_get_tracing_count() == 1
        print(f"{name:8s} batch {size:2d}: traced for the size {fixed_ms:8.1f} ms, any size {open_ms:8.1f} ms, "
              f"ratio (any/for the size) {open_ms / fixed_ms:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="timed calls per side and batch size")
    parser.add_argument("--vgg16", action="store_true", help="VGG16 too (batch 1 and 8, fewer calls)")
    args = parser.parse_args()
    cpu = subprocess.run("grep 'model name' /proc/cpuinfo | head -1", shell=True, capture_output=True, text=True)
    print(cpu.stdout.strip(), "| load average", " ".join(f"{value:.2f}" for value in os.getloadavg()))
    compare("scratch", build_scratch_cnn, [1, 8, 32], args.calls)
    if args.vgg16:
        compare("vgg16", lambda: build_vgg16(weights=None), [1, 8], max(3, args.calls // 5))
    print("load average", " ".join(f"{value:.2f}" for value in os.getloadavg()))


if __name__ == "__main__":
    main()
