"""Training: the scratch CNN, and VGG16 fine-tuned in two phases.

Scratch CNN: Adam, categorical cross-entropy, early stopping on validation loss (best weights
restored), the best model checkpointed to `<out>/scratch.keras`, history to JSON.

VGG16, the Keras transfer-learning recipe: (1) freeze the ImageNet base and train the new head
until it converges; (2) unfreeze the base (all of it, or from a chosen block), *recompile* so the
change takes effect, and continue at a very low learning rate so the pretrained filters are only
nudged. Full fine-tuning runs at about 1.5 images/s on a 2-core CPU, so without a GPU the default
is a CPU-practical path: phase 1 trains the head on features the frozen base computes once, and
phase 2 opens only the top block ("block5"). With a GPU, the full recipe runs as is.

    python -m facemask.train --model scratch --data data --out models/
    python -m facemask.train --model vgg16 --data data --epochs 5 --weights imagenet --out models/
    python -m facemask.train --model scratch --data data --extra-train ../shared/datasets/crops

The default recipe trains on split.py's crops of the Kaggle photos (`data/train`), framed as
detection frames the faces it serves. `--extra-train DIR` (repeatable) adds other crop folders
(DIR/mask, DIR/no-mask) to the training split only: validation, early stopping and the test
report stay on the data folder's own photos. Class weights count everything trained on.

At the end the command evaluates the model on the test split and writes the reports.

Where one GPU is not enough, `--distribute` trains under `tf.distribute.MirroredStrategy`: the model
is built and compiled inside the strategy's scope, and Keras' own `fit` then keeps a copy on every
GPU of this machine, splits each batch among them (`--batch-size` is the global batch) and
all-reduces their gradients, so every copy takes the same step. Without a GPU, MirroredStrategy
runs on the CPU as a single replica (which is how the flag is tested).
Across several machines the same code runs under `tf.distribute.MultiWorkerMirroredStrategy`,
started on every machine with a `TF_CONFIG` naming the cluster; that is not wired to a flag here.

    python -m facemask.train --model scratch --data data --distribute
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from facemask import IMAGE_SIZE
from facemask.data import DataError, check_data_dir, check_extra_dirs, class_weights, load_datasets, split_files
from facemask.evaluate import evaluate_model, format_report
from facemask.models import (
    VGG_BLOCKS,
    build_scratch_cnn,
    build_vgg16,
    save_model,
    unfreeze_vgg16,
    vgg16_features,
    vgg16_head,
)

PRECISIONS = {"float32": "float32", "bf16": "mixed_bfloat16"}
FINE_TUNE_LEARNING_RATE = 1e-5
DEFAULT_EPOCHS = {"scratch": 30, "vgg16": 10}


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Build layers under a Keras dtype policy ("float32" or "bf16" = mixed_bfloat16), then restore.

    The policy is read when a layer is created, so only model building needs to sit inside; a saved
    model remembers its policy. The output layers are float32 either way (see models.py).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(PRECISIONS[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def has_gpu() -> bool:
    """Whether TensorFlow sees a GPU (then VGG16 runs the full fine-tuning recipe by default)."""
    return bool(tf.config.list_physical_devices("GPU"))


def distribution_strategy(distribute: bool) -> tf.distribute.Strategy:
    """MirroredStrategy over this machine's GPUs (the CPU, one replica, if it has none) when asked,
    else TensorFlow's default strategy, whose scope changes nothing.

    Keras models remember the strategy whose scope they were created in and fit, evaluate and
    predict under it, so only building and compiling (which creates the optimizer's variables)
    need to sit in `strategy.scope()`.
    """
    if not distribute:
        return tf.distribute.get_strategy()
    strategy = tf.distribute.MirroredStrategy()
    print(f"MirroredStrategy: {strategy.num_replicas_in_sync} replica(s)", file=sys.stderr)
    return strategy


def compile_model(model: keras.Model, learning_rate: float) -> keras.Model:
    """Adam, categorical cross-entropy (one-hot labels), accuracy; returns the model for chaining."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


# fit() gets shuffle=False for tf.data input: load_split already reshuffles the training split every
# epoch (Keras warns that its own shuffle flag is ignored for datasets).


def callbacks_for(patience: int, checkpoint: Path | None = None) -> list[keras.callbacks.Callback]:
    """Early stopping on validation loss with the best weights restored, and an optional checkpoint.

    Before stopping, the learning rate is cut five-fold whenever validation loss stalls for
    `patience // 2` epochs (at least one): at a fixed rate the loss keeps bouncing around its floor.
    """
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.2, patience=max(1, patience // 2),
                                          min_lr=1e-7, verbose=1),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True, verbose=1),
    ]
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss", save_best_only=True))
    return callbacks


def history_dict(*histories: keras.callbacks.History) -> dict[str, list[float]]:
    """Per-epoch metrics as plain floats, phases concatenated in order (JSON-ready)."""
    merged: dict[str, list[float]] = {}
    for history in histories:
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(float(value) for value in values)
    return merged


def save_history(history: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(history, indent=2) + "\n")
    return path


def train_scratch(data_dir: Path | str, out_dir: Path | str = "models", epochs: int = 30, batch_size: int = 32,
                  learning_rate: float = 1e-3, seed: int = 0, subset: float = 1.0, patience: int = 6,
                  use_class_weights: bool = True, precision: str = "float32",
                  image_size: tuple[int, int] = IMAGE_SIZE, verbose: int = 2,
                  extra_train: Sequence[Path | str] = (), distribute: bool = False) -> tuple[keras.Model, dict]:
    """Train the scratch CNN; writes `<out>/scratch.keras` (+ .json class names) and scratch_history.json.

    `extra_train`: more crop folders (class sub-folders) trained on with `<data>/train`.
    `distribute`: under MirroredStrategy, across this machine's GPUs (see `distribution_strategy`).
    """
    keras.utils.set_random_seed(seed)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    datasets = load_datasets(data_dir, batch_size, image_size, augment=True, subset=subset, seed=seed,
                             splits=("train", "valid"), extra_train=extra_train)
    with precision_policy(precision), distribution_strategy(distribute).scope():
        model = compile_model(build_scratch_cnn(image_size), learning_rate)
    checkpoint = out_dir / "scratch.keras"
    history = model.fit(datasets["train"], validation_data=datasets["valid"], epochs=epochs, shuffle=False,
                        class_weight=class_weights(data_dir / "train", extra_dirs=extra_train)
                        if use_class_weights else None,
                        callbacks=callbacks_for(patience, checkpoint), verbose=verbose)
    # EarlyStopping restored the best epoch's weights; save them again with the class-name sidecar.
    save_model(model, checkpoint)
    history = history_dict(history)
    save_history(history, out_dir / "scratch_history.json")
    return model, history


def compute_features(extractor: keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Run the frozen base once over a (non-augmented) dataset: (features float32, one-hot labels)."""
    features, labels = [], []
    for images, onehot in dataset:
        features.append(np.asarray(extractor.predict_on_batch(images), dtype=np.float32))
        labels.append(onehot.numpy())
    return np.concatenate(features), np.concatenate(labels)


def train_vgg16(data_dir: Path | str, out_dir: Path | str = "models", weights: str | None = "imagenet",
                epochs: int = 10, fine_tune_epochs: int | None = None, batch_size: int = 32,
                learning_rate: float = 1e-3, fine_tune_learning_rate: float = FINE_TUNE_LEARNING_RATE,
                fine_tune_from: str | None = None, cpu_practical: bool | None = None, seed: int = 0,
                subset: float = 1.0, patience: int = 6, use_class_weights: bool = True, precision: str = "float32",
                image_size: tuple[int, int] = IMAGE_SIZE, verbose: int = 2,
                extra_train: Sequence[Path | str] = (), distribute: bool = False) -> tuple[keras.Model, dict]:
    """Fine-tune VGG16 in two phases; writes `<out>/vgg16.keras` (+ .json) and vgg16_history.json.

    `cpu_practical` None means "yes unless a GPU is present". `fine_tune_from` is a block name
    ("block5"), "all", or None for the path's default ("block5" CPU-practical, "all" otherwise).
    `fine_tune_epochs` defaults to `epochs`. The history gets a "phase" entry (1 or 2 per epoch).
    `distribute`: under MirroredStrategy; every model (the full one, the head, the feature
    extractor) is made and compiled in its scope.
    """
    keras.utils.set_random_seed(seed)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    cpu_practical = not has_gpu() if cpu_practical is None else cpu_practical
    fine_tune_from = fine_tune_from or ("block5" if cpu_practical else "all")
    if fine_tune_from not in ("all", *VGG_BLOCKS):  # checked now, not after a long phase 1
        raise ValueError(f"fine_tune_from must be one of {', '.join(VGG_BLOCKS)} or all, got {fine_tune_from!r}")
    fine_tune_epochs = epochs if fine_tune_epochs is None else fine_tune_epochs
    weights_by_class = class_weights(data_dir / "train", extra_dirs=extra_train) if use_class_weights else None
    datasets = load_datasets(data_dir, batch_size, image_size, augment=True, subset=subset, seed=seed,
                             splits=("train", "valid"), extra_train=extra_train)
    strategy = distribution_strategy(distribute)
    with precision_policy(precision), strategy.scope():
        model = build_vgg16(weights, image_size)
    checkpoint = out_dir / "vgg16.keras"

    # Phase 1: the base is frozen (build_vgg16 leaves it so); only the new head learns.
    if cpu_practical:
        # The frozen base gives the same features for an image every epoch, so compute them once and
        # train the head on them: minutes instead of hours on a CPU. The price: no augmentation in
        # this phase (augmented images would need their features recomputed every epoch).
        plain = load_datasets(data_dir, batch_size, image_size, augment=False, subset=subset, seed=seed,
                              splits=("train", "valid"), extra_train=extra_train)
        with strategy.scope():
            extractor = vgg16_features(model)
        train_x, train_y = compute_features(extractor, plain["train"])
        valid_x, valid_y = compute_features(extractor, plain["valid"])
        # The head model shares its layers with `model`, so training it trains the full model's head.
        with strategy.scope():
            head = compile_model(vgg16_head(model), learning_rate)
        phase1 = head.fit(train_x, train_y, validation_data=(valid_x, valid_y), epochs=epochs,
                          batch_size=batch_size, class_weight=weights_by_class, shuffle=True,
                          callbacks=callbacks_for(patience), verbose=verbose)
    else:
        with strategy.scope():
            compile_model(model, learning_rate)
        phase1 = model.fit(datasets["train"], validation_data=datasets["valid"], epochs=epochs, shuffle=False,
                           class_weight=weights_by_class, callbacks=callbacks_for(patience, checkpoint),
                           verbose=verbose)

    # Phase 2: open the base (or its top blocks), recompile - without it the change is ignored -
    # and continue at a very low learning rate so the pretrained filters are nudged, not wrecked.
    unfreeze_vgg16(model, None if fine_tune_from == "all" else fine_tune_from)
    with strategy.scope():
        compile_model(model, fine_tune_learning_rate)
    phase2 = model.fit(datasets["train"], validation_data=datasets["valid"], epochs=fine_tune_epochs, shuffle=False,
                       class_weight=weights_by_class, callbacks=callbacks_for(patience, checkpoint),
                       verbose=verbose)
    save_model(model, checkpoint)
    history = history_dict(phase1, phase2)
    history["phase"] = [1] * len(phase1.epoch) + [2] * len(phase2.epoch)
    save_history(history, out_dir / "vgg16_history.json")
    return model, history


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m facemask.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["scratch", "vgg16"], required=True)
    parser.add_argument("--data", type=Path, default=Path("data"), help="folder with train/, valid/, test/")
    parser.add_argument("--extra-train", type=Path, action="append", default=[], metavar="DIR",
                        help="another crop folder (DIR/mask, DIR/no-mask) added to the training split only; "
                             "repeatable (e.g. ../shared/datasets/crops)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="maximum epochs (VGG16: of phase 1); default 30 for scratch, 10 for vgg16")
    parser.add_argument("--fine-tune-epochs", type=int, default=None, help="VGG16 phase 2 epochs (default: --epochs)")
    parser.add_argument("--out", type=Path, default=Path("models"), help="folder for the .keras model and history")
    parser.add_argument("--reports", type=Path, default=Path("reports"), help="folder for the test-set reports")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's rate (VGG16: of phase 1)")
    parser.add_argument("--fine-tune-learning-rate", type=float, default=FINE_TUNE_LEARNING_RATE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default="imagenet",
                        help="VGG16 base weights: imagenet (downloads once), none, or a local ..._notop.h5 file")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="float32",
                        help="bf16: mixed bfloat16, faster on CPUs with AVX512-BF16 and recent GPUs, "
                             "several times slower on other CPUs (default float32)")
    parser.add_argument("--subset", type=float, default=1.0, help="fraction of each split to use (quick runs)")
    parser.add_argument("--fine-tune-from", default=None,
                        help="VGG16 phase 2: first block to unfreeze (block1..block5) or 'all' "
                             "(default: block5 on the CPU-practical path, all otherwise)")
    parser.add_argument("--full-recipe", action="store_true",
                        help="VGG16 without the CPU shortcuts (the default when a GPU is present)")
    parser.add_argument("--patience", type=int, default=6,
                        help="early-stopping patience in epochs; the learning rate drops 5x after half of it")
    parser.add_argument("--no-class-weights", action="store_true", help="do not weight classes by rarity")
    parser.add_argument("--distribute", action="store_true",
                        help="train under tf.distribute.MirroredStrategy across all GPUs of this machine "
                             "(--batch-size is then split among them); on a CPU-only machine, one replica. "
                             "Several machines need MultiWorkerMirroredStrategy (see the module docstring)")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Reject bad arguments before any model is built; raises DataError/ValueError with a clear message."""
    check_data_dir(args.data)
    check_extra_dirs(args.extra_train)
    if args.epochs < 1 or (args.fine_tune_epochs is not None and args.fine_tune_epochs < 1):
        raise ValueError("epochs must be at least 1")
    if not 0 < args.subset <= 1:
        raise ValueError(f"--subset must be a fraction in (0, 1], got {args.subset}")
    if args.model == "vgg16" and args.weights not in ("imagenet", None) and not Path(args.weights).is_file():
        raise ValueError(f"VGG16 weights file not found: {args.weights}")
    if args.fine_tune_from not in (None, "all", *VGG_BLOCKS):
        raise ValueError(f"--fine-tune-from must be one of {', '.join(VGG_BLOCKS)} or all, got {args.fine_tune_from!r}")


def describe_training_data(train_dir: Path, extra_train: Sequence[Path]) -> str:
    """`training on 1,000 crops: 800 in data/train + 200 in DIR`: what the model will learn from."""
    counts = [(folder, len(split_files([folder])[0])) for folder in (train_dir, *extra_train)]
    parts = " + ".join(f"{count:,} in {folder}" for folder, count in counts)
    return f"training on {sum(count for _, count in counts):,} crops: {parts}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.weights = None if str(args.weights).lower() == "none" else args.weights
    args.epochs = DEFAULT_EPOCHS[args.model] if args.epochs is None else args.epochs
    try:
        check_args(args)
    except (DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe_training_data(args.data / "train", args.extra_train), flush=True)
    common = dict(data_dir=args.data, out_dir=args.out, epochs=args.epochs, batch_size=args.batch_size,
                  learning_rate=args.learning_rate, seed=args.seed, subset=args.subset, patience=args.patience,
                  use_class_weights=not args.no_class_weights, precision=args.precision,
                  extra_train=args.extra_train, distribute=args.distribute)
    if args.model == "scratch":
        model, history = train_scratch(**common)
    else:
        model, history = train_vgg16(**common, weights=args.weights, fine_tune_epochs=args.fine_tune_epochs,
                                     fine_tune_learning_rate=args.fine_tune_learning_rate,
                                     fine_tune_from=args.fine_tune_from,
                                     cpu_practical=False if args.full_recipe else None)
    print(f"saved {args.out / (args.model + '.keras')} and {args.out / (args.model + '_history.json')}")
    phase_boundary = history["phase"].count(1) if "phase" in history else None
    metrics = evaluate_model(model, args.data / "test", args.reports, history=history, name=args.model,
                             phase_boundary=phase_boundary)
    print(format_report(metrics))
    print(f"reports written to {args.reports}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
