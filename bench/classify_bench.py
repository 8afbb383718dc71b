"""Benchmark: milliseconds per face of the mask classifier, per runtime, format and thread count.

    python bench/classify_bench.py [--scratch models/scratch.keras] [--rounds 5] [--seconds 0.3]

Two networks: a compact-like one (a stem convolution and four SeparableConv2D + BatchNormalization
+ ReLU blocks, one residual Add, global average pooling, a softmax Dense; 96x96 RGB 0-255 in, a
Rescaling layer first: the kind of network issue 17 makes default) with random weights, and the
scratch CNN of facemask.models (224x224, random weights unless --scratch names a trained one).
Speed does not depend on the weights. Each is exported with facemask.export to ONNX and TFLite,
float32, float16 and int8 (calibrated on real crops), then run by:

- Keras (`predict_on_batch`, the commands' path today; TensorFlow picks its own threads),
- ONNX Runtime on the .onnx files, LiteRT (ai-edge-litert) on the .tflite files, both through
  facemask.classifier, the interface the commands will use,
- OpenVINO on the .onnx files and on the float32 .tflite (f32 inference precision forced: on
  CPUs with AVX512-BF16 it would otherwise compute in bfloat16), when it is installed
  (`pip install openvino`: measured here, not a dependency of the project),

at 1 and 2 threads, on real face crops (../shared/datasets/crops), for three workloads: one face
per call (a webcam), five faces per call (a crowd frame) and 3 to 7 faces per call in turn (a
crowd clip, where the number of faces changes from frame to frame). Milliseconds per face, median
of the rounds; rounds alternate over every runner so that other work on the machine slows all alike.

    python bench/classify_bench.py --served models/compact.keras

measures only what the commands do with a trained model: Keras on the .keras file against what
facemask.classifier.load_served serves for it (the .onnx training wrote beside it, in ONNX Runtime).
"""

from __future__ import annotations

import argparse
import importlib.util
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

import numpy as np  # noqa: E402

from facemask.classifier import KerasClassifier, load_classifier, load_served  # noqa: E402
from facemask.conversion import EXPORTERS, QUANTIZATIONS  # noqa: E402
from facemask.images import load_image, to_model_input  # noqa: E402

CROPS = ROOT.parent / "shared" / "datasets" / "crops"
# OpenVINO is measured, not used by the project: `pip install openvino` to include it.
HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
WORKLOADS = {"1 face": [1], "5 faces": [5], "3-7 faces": [3, 5, 7, 4, 6]}


def build_compact_like(size: int = 96, seed: int = 0):
    """A compact-like classifier (about 31 k parameters) with random weights and non-trivial BN statistics."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name="rgb")
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    for filters, stride in ((32, 2), (64, 2), (128, 2), (128, 1)):
        y = layers.SeparableConv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = layers.ReLU()(layers.BatchNormalization()(y))
        x = layers.Add()([x, y]) if stride == 1 else y
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(2, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="compact_like")
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # as if trained: batch statistics that are not the identity
        if isinstance(layer, layers.BatchNormalization):
            shape = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.1, shape), rng.normal(0, 0.2, shape),
                               rng.uniform(0.05, 0.5, shape)])
    return model


def real_crops(count: int = 40) -> list:
    files = [f for name in ("mask", "no-mask") for f in sorted((CROPS / name).glob("*.jpg"))[: count // 2]]
    if not files:
        sys.exit(f"error: {CROPS}: no crops (the shared data folder is missing)")
    return [load_image(f) for f in files]


class OpenVINORunner:
    """OpenVINO on one exported file, behind the same predict_proba as facemask.classifier's."""

    def __init__(self, path: Path, threads: int):
        import openvino as ov

        core = ov.Core()
        self.compiled = core.compile_model(str(path), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32"})
        self.request = self.compiled.create_infer_request()

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        return self.request.infer([batch])[0]


def make_runners(keras_path: Path, folder: Path, crops: np.ndarray) -> dict[str, Callable]:
    """name -> predict_proba(batch) for every runtime, format and thread count on one network."""
    reference = KerasClassifier.load(keras_path)
    reference.predict_proba(crops[:1])
    runners: dict[str, Callable] = {"keras (TF threads)": reference.predict_proba}
    for fmt in ("onnx", "tflite"):
        for quantize in (None, *QUANTIZATIONS):
            path = folder / f"{keras_path.stem}-{quantize or 'float32'}.{fmt}"
            EXPORTERS[fmt](reference.model, path, quantize, crops if quantize == "int8" else None)
            runtime = "onnxruntime" if fmt == "onnx" else "litert"
            for threads in (1, 2):
                runners[f"{runtime} {quantize or 'float32'} {threads}t"] = load_classifier(path, threads).predict_proba
            if HAVE_OPENVINO and (fmt == "onnx" or quantize is None):
                for threads in (1, 2):
                    runners[f"openvino {fmt} {quantize or 'float32'} {threads}t"] = \
                        OpenVINORunner(path, threads).predict_proba
    return runners


def measure(runners: dict[str, Callable], crops: np.ndarray, rounds: int, seconds: float) -> dict:
    """Wall and CPU milliseconds per face of every round, per runner and workload, rounds alternating.

    CPU time (every thread of this process) is what a face costs whatever else the machine runs: on a
    shared machine the wall time also holds the waits for a core.
    """
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    cpu_times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for _ in range(rounds):
        for name, run in runners.items():
            for workload, sizes in WORKLOADS.items():
                batches = [crops[i % len(crops): i % len(crops) + n] for i, n in enumerate(sizes * 8)]
                for batch in batches[:2]:
                    run(batch)  # warm up (and, for LiteRT, the tensors of these sizes)
                faces, started, cpu = 0, time.perf_counter(), time.process_time()
                while time.perf_counter() - started < seconds:
                    for batch in batches:
                        run(batch)
                        faces += len(batch)
                times[name, workload].append(1000 * (time.perf_counter() - started) / faces)
                cpu_times[name, workload].append(1000 * (time.process_time() - cpu) / faces)
    return times, cpu_times


def report(title: str, measured: tuple[dict, dict]) -> None:
    """Per runner and workload: wall ms per face, best round and median; CPU ms per face, median; and the
    ratio of Keras' best wall time to the runner's (x faster).

    The best round is what the runner does when the machine leaves it alone; on a shared machine
    the median also carries the others' load, and the CPU time does not.
    """
    times, cpu_times = measured
    names = list(dict.fromkeys(name for name, _ in times))
    best = {key: min(values) for key, values in times.items()}
    keras = {w: best["keras (TF threads)", w] for w in WORKLOADS}
    print(f"\n{title}: ms per face, wall best / wall median / CPU median (Keras' best wall / this best wall)")
    print(f"  {'runner':30s}" + "".join(f"{w:>34s}" for w in WORKLOADS))
    for name in names:
        cells = (f"{best[name, w]:6.3f} /{statistics.median(times[name, w]):7.3f} /"
                 f"{statistics.median(cpu_times[name, w]):6.3f} ({keras[w] / best[name, w]:5.1f}x)" for w in WORKLOADS)
        print(f"  {name:30s}" + "".join(cell.rjust(34) for cell in cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scratch", type=Path, default=None, help="a trained scratch CNN (default: random weights)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="per runner, workload and round")
    parser.add_argument("--skip-scratch", action="store_true")
    parser.add_argument("--served", type=Path, default=None, metavar="MODEL.keras",
                        help="only Keras on this trained model against what the commands serve for it")
    args = parser.parse_args()
    from facemask.models import build_scratch_cnn, save_model

    pictures = real_crops()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; {len(pictures)} real crops")
    if args.served is not None:
        served = load_served(args.served)
        crops = to_model_input(pictures, served.input_size)
        runners = {"keras (TF threads)": KerasClassifier.load(args.served).predict_proba,
                   f"served: {served.path.name} ({served.format})": served.predict_proba}
        report(f"{args.served}, {args.rounds} rounds", measure(runners, crops, args.rounds, args.seconds))
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
        return 0
    with tempfile.TemporaryDirectory(prefix="classify_bench_") as folder:
        networks = {"compact-like 96x96 (random weights)": save_model(build_compact_like(),
                                                                      Path(folder) / "compact.keras")}
        if not args.skip_scratch:
            networks["scratch CNN 224x224"] = args.scratch or save_model(build_scratch_cnn(),
                                                                         Path(folder) / "scratch.keras")
        for title, path in networks.items():
            crops = to_model_input(pictures, KerasClassifier.load(path).input_size)
            runners = make_runners(Path(path), Path(folder), crops)
            report(f"{title}, {args.rounds} rounds", measure(runners, crops, args.rounds, args.seconds))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
