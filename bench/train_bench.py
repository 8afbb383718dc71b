"""Training and inference speed of the classifiers, measured side by side in one run.

Training: images per second of an epoch of the scratch CNN for
  - the original project's configuration: tf.keras's legacy ImageDataGenerator (rescale, rotation 40,
    shifts 0.1, horizontal flip), flow_from_directory, batch 10, float32;
  - this project's pipeline (facemask.data: crops decoded and resized by facemask.images as at
    serving time, uint8 cache, Keras augmentation layers, prefetch), batch 32, in float32 and in
    mixed bfloat16.
The first epoch of each (graph tracing, first decode into the cache) is a warm-up. The original project's and
this pipeline's epochs alternate, and both the fastest epoch (images/s) and the work per image
(images per CPU-second, all threads) are reported, so load from other processes skews neither.
Inference: images per second of both models at batch 1 and batch 32 (VGG16 with random
weights: speed does not depend on the weight values).

    python bench/train_bench.py                 # ../shared/datasets/crops if present, else the sample
    python bench/train_bench.py --images 400 --bf16-images 64

The real crops are used through a temporary folder of symlinks (a fixed, seeded subset).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from facemask import CLASS_NAMES, IMAGE_SIZE  # noqa: E402
from facemask.data import list_images, load_split  # noqa: E402
from facemask.models import build_scratch_cnn, build_vgg16  # noqa: E402
from facemask.training import compile_model, precision_policy  # noqa: E402

SHARED_CROPS = ROOT.parent / "shared" / "datasets" / "crops"


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock and process CPU seconds (all threads) of each epoch."""

    def __init__(self):
        super().__init__()
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        self.wall.append(time.perf_counter() - self.start[0])
        self.cpu.append(time.process_time() - self.start[1])


def link_subset(source: Path, out: Path, images: int, seed: int = 0) -> int:
    """out/{mask,no-mask}: symlinks to a seeded subset of about `images` files, half per class."""
    rng = np.random.default_rng(seed)
    total = 0
    for name in CLASS_NAMES:
        files = list_images(source / name)
        chosen = rng.choice(len(files), size=min(len(files), images // 2), replace=False)
        (out / name).mkdir(parents=True)
        for index in sorted(chosen):
            os.symlink(files[index].resolve(), out / name / files[index].name)
        total += len(chosen)
    return total


def sample_train_folder(workdir: Path) -> Path:
    """The generated sample cut by split.py; its train split."""
    from facemask import split
    from facemask.sample import make_sample

    make_sample(workdir / "sample", photos=120, seed=0)
    args = [str(workdir / "sample" / "images"), str(workdir / "sample" / "train.csv"), "70", "15", "15",
            "--out", str(workdir / "data")]
    if split.main(args) != 0:
        raise SystemExit("split.py failed on the generated sample")
    return workdir / "data" / "train"


class Run:
    """One training configuration: a compiled model and its data, timed one epoch at a time."""

    def __init__(self, name: str, model: keras.Model, data, images: int, **fit_args):
        self.name, self.model, self.data, self.images, self.fit_args = name, model, data, images, fit_args
        self.timer = EpochTimer()

    def epoch(self) -> None:
        self.model.fit(self.data, epochs=1, callbacks=[self.timer], verbose=0, **self.fit_args)

    def speed(self) -> tuple[float, float]:
        """(images/s of the fastest timed epoch, images per CPU-second over the timed epochs);
        the first epoch (tracing, filling the cache) is a warm-up and not counted."""
        wall, cpu = self.timer.wall[1:], self.timer.cpu[1:]
        return self.images / min(wall), self.images * len(cpu) / sum(cpu)


def legacy_run(train_dir: Path, images: int) -> Run:
    """The original project's configuration: legacy ImageDataGenerator, batch 10, float32."""
    from tensorflow.keras.preprocessing.image import ImageDataGenerator  # tf.keras's legacy copy

    generator = ImageDataGenerator(rescale=1 / 255, rotation_range=40, width_shift_range=0.1,
                                   height_shift_range=0.1, horizontal_flip=True)
    flow = generator.flow_from_directory(train_dir, target_size=IMAGE_SIZE, batch_size=10, classes=CLASS_NAMES,
                                         class_mode="categorical", seed=0)
    # The same network without its Rescaling layer: the generator already divides by 255.
    scratch = build_scratch_cnn()
    model = keras.Sequential([keras.Input((*IMAGE_SIZE, 3)), *scratch.layers[2:]], name="seed_cnn")
    return Run("seed config (ImageDataGenerator, batch 10, float32)", compile_model(model, 1e-3), flow, images)


def pipeline_run(train_dir: Path, images: int, precision: str, augment: bool = True) -> Run:
    dataset = load_split(train_dir, batch_size=32, augment=augment, shuffle=True)
    with precision_policy(precision):
        model = compile_model(build_scratch_cnn(), 1e-3)
    label = {"float32": "float32", "bf16": "mixed bf16"}[precision]
    name = f"this pipeline (tf.data, batch 32, {label})" if augment else "  same, no augmentation (~ the network alone)"
    return Run(name, model, dataset, images, shuffle=False)


def inference_speed(model: keras.Model, batch_size: int, seconds: float = 10.0) -> float:
    """Images per second of predict_on_batch, repeated for about `seconds` after one warm-up call."""
    batch = np.random.default_rng(0).uniform(0, 255, (batch_size, *IMAGE_SIZE, 3)).astype(np.float32)
    model.predict_on_batch(batch)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        model.predict_on_batch(batch)
        calls += 1
    return calls * batch_size / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300, help="training images per epoch (float32 runs)")
    parser.add_argument("--bf16-images", type=int, default=64, help="training images per epoch for bf16 (slow "
                                                                    "on CPUs without native bfloat16)")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs per float32 configuration")
    parser.add_argument("--skip-bf16", action="store_true")
    parser.add_argument("--skip-inference", action="store_true")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory(prefix="train_bench-") as tmp:
        workdir = Path(tmp)
        if SHARED_CROPS.is_dir():
            source, label = SHARED_CROPS, f"real crops ({SHARED_CROPS})"
        else:
            source, label = sample_train_folder(workdir), "generated sample (no ../shared/datasets/crops)"
        train_dir = workdir / "train"
        images = link_subset(source, train_dir, args.images)
        print(f"data: {label}, {images} training images, 224x224")

        # The original project's and this pipeline's epochs alternate, so a burst of load from other processes
        # hits both; the fastest epoch of each and the images per CPU-second are compared.
        # The run without augmentation shows the ceiling: the network's own compute, which no input
        # pipeline can go below.
        runs = [legacy_run(train_dir, images), pipeline_run(train_dir, images, "float32"),
                pipeline_run(train_dir, images, "float32", augment=False)]
        for _ in range(args.repeats + 1):
            for run in runs:
                run.epoch()
        legacy = runs[0]
        if not args.skip_bf16:
            bf16_images = link_subset(source, workdir / "train_bf16", args.bf16_images)
            bf16 = pipeline_run(workdir / "train_bf16", bf16_images, "bf16")
            for _ in range(2):
                bf16.epoch()
            runs.append(bf16)
        base_speed, base_cpu = legacy.speed()
        print(f"{'training, one epoch':54s}{'images/s':>9s}{'ratio':>7s}{'img/CPU-s':>11s}{'ratio':>7s}")
        for run in runs:
            speed, per_cpu = run.speed()
            print(f"{run.name:54s}{speed:9.1f}{speed / base_speed:6.2f}x{per_cpu:11.2f}{per_cpu / base_cpu:6.2f}x"
                  f"   ({run.images} images, epochs {', '.join(f'{w:.0f}s' for w in run.timer.wall)})", flush=True)

    if not args.skip_inference:
        print("inference (predict_on_batch, float32):")
        for name, model in [("scratch CNN", build_scratch_cnn()), ("VGG16", build_vgg16(weights=None))]:
            speeds = {size: inference_speed(model, size) for size in (1, 32)}
            print(f"  {name:12s} batch 1: {speeds[1]:7.1f} images/s   batch 32: {speeds[32]:7.1f} images/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
