"""The train command (library: facemask.training): the compact and scratch CNNs, and VGG16 in two phases.

Every setting, its default and its help live in `facemask.config.TrainConfig`, from which the command
line is generated; the model's JSON sidecar records the config it was trained with.

The compact and scratch CNNs (trained from scratch): Adam, categorical cross-entropy, early stopping on
validation loss (best weights restored), the best model checkpointed to `<out>/<arch>.keras`, history
to JSON.

Every network then gets its decision threshold on P(no-mask), chosen on the validation split (the best
balanced accuracy's cut pulled halfway back to 0.5: facemask.metrics.serving_threshold), saved in its
sidecar, which predict, detect, the app, evaluate and watch serve it with.

VGG16, the Keras transfer-learning recipe: (1) freeze the ImageNet base and train the new head
until it converges; (2) unfreeze the base (all of it, or from a chosen block), *recompile* so the
change takes effect, and continue at a very low learning rate so the pretrained filters are only
nudged. Full fine-tuning is slow on a CPU (bench/README.md), so there are two recipes, chosen
with `--recipe` and never by the hardware (one command trains the same model on every machine):
`cached-features` (the default) trains phase 1's head on features the frozen base computes once and
opens only the top block ("block5") in phase 2; `full` runs the recipe as is, for a GPU.

    facemask train --data data --out models/          # the default network, compact
    facemask train --arch scratch --data data --out models/
    facemask train --arch vgg16 --data data --epochs 5 --weights imagenet --out models/
    facemask train --arch vgg16 --recipe full --data data --out models/     # on a GPU
    facemask train --arch scratch --data data --extra-train ../shared/datasets/crops

The default trains on split.py's crops of the Kaggle photos (`data/train`), framed as
detection frames the faces it serves. `--extra-train DIR` (repeatable) adds other crop folders
(DIR/mask, DIR/no-mask) to the training split only: validation, early stopping and the test
report stay on the data folder's own photos. Class weights count everything trained on, an extra crop
weighing `--extra-weight` of one of the data folder's.

At the end the command exports the model to `<out>/<arch>.onnx` (float32, checked against the .keras
on the test split: facemask.export), which every command then serves in its place through ONNX Runtime,
and evaluates the model on the test split and writes the reports.

Where one GPU is not enough, `--distribute` trains under `tf.distribute.MirroredStrategy`: the model
is built and compiled inside the strategy's scope, and Keras' own `fit` then keeps a copy on every
GPU of this machine, splits each batch among them (`--batch-size` is the global batch) and
all-reduces their gradients, so every copy takes the same step. Without a GPU, MirroredStrategy
runs on the CPU as a single replica (which is how the flag is tested).
Across several machines the same code runs under `tf.distribute.MultiWorkerMirroredStrategy`,
started on every machine with a `TF_CONFIG` naming the cluster; that is not wired to a flag here.

    facemask train --arch scratch --data data --distribute
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
from collections.abc import Sequence

from facemask.cli import fail, run_and_exit
from facemask.config import parse_config
from facemask.conversion import export_after_training
from facemask.data import DataError
from facemask.evaluation import evaluate_model
from facemask.models import WeightsUnavailable
from facemask.reports import format_report
from facemask.sidecar import decision_threshold
from facemask.splitting import SplitError, read_crop_margin
from facemask.training import describe_training_data, train


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)  # a bad option exits 2 here, with one `error:` line
    try:
        config.check_files()
        read_crop_margin(config.data)  # recorded in the sidecar at the end: a bad record fails now, not then
    except (DataError, ValueError, SplitError) as error:
        return fail(error)
    print(describe_training_data(config.data / "train", config.extra_train), flush=True)
    try:
        model, history = train(config)
    except WeightsUnavailable as error:
        return fail(error)
    saved = config.out / f"{config.arch}.keras"
    threshold = decision_threshold(saved)
    print(f"saved {saved} and {config.out / (config.arch + '_history.json')}; decision threshold on P(no-mask) "
          f"{threshold:.4g}, chosen on {config.data / 'valid'}")
    print(export_after_training(saved, config.arch, config.data), flush=True)
    phase_boundary = history["phase"].count(1) if "phase" in history else None
    metrics = evaluate_model(model, config.data / "test", config.reports, history=history, name=config.arch,
                             phase_boundary=phase_boundary, threshold=threshold)
    print(format_report(metrics))
    print(f"reports written to {config.reports}")
    return 0


if __name__ == "__main__":
    run_and_exit(main)
