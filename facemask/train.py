"""Training: the compact CNN and the scratch CNN, and VGG16 fine-tuned in two phases.

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
nudged. Full fine-tuning runs at about 1.5 images/s on a 2-core CPU, so there are two recipes, chosen
with `--recipe` and never by the hardware (one command trains the same model on every machine):
`cached-features` (the default) trains phase 1's head on features the frozen base computes once and
opens only the top block ("block5") in phase 2; `full` runs the recipe as is, for a GPU.

    python -m facemask.train --data data --out models/          # the default network, compact
    python -m facemask.train --arch scratch --data data --out models/
    python -m facemask.train --arch vgg16 --data data --epochs 5 --weights imagenet --out models/
    python -m facemask.train --arch vgg16 --recipe full --data data --out models/     # on a GPU
    python -m facemask.train --arch scratch --data data --extra-train ../shared/datasets/crops

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

    python -m facemask.train --arch scratch --data data --distribute
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from facemask import save_json
from facemask.classifier import trace_for_any_batch_size
from facemask.cli import deferred_stop, fail, raise_if_stopped, run
from facemask.config import PRECISIONS, TrainConfig, parse_config, training_record
from facemask.data import DataError, class_weights, load_datasets, split_files
from facemask.evaluate import evaluate_model, format_report
from facemask.export import export_after_training
from facemask.metrics import compute_metrics, serving_threshold
from facemask.models import (
    WeightsUnavailable,
    build_compact,
    build_scratch_cnn,
    build_vgg16,
    decision_threshold,
    save_model,
    unfreeze_vgg16,
    vgg16_features,
    vgg16_head,
)

# The networks trained from scratch, by arch name; VGG16 has its own two-phase recipe.
FROM_SCRATCH = {"compact": build_compact, "scratch": build_scratch_cnn}


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


LR_DROP = 5  # the learning rate is divided by this when validation loss stalls


def lr_patience(patience: int) -> int:
    """Epochs without a better validation loss before the learning rate drops: half the early-stopping
    patience, at least one."""
    return max(1, patience // 2)


class StopOnSignal(keras.callbacks.Callback):
    """Ends fit, evaluate or predict at the end of a batch once SIGINT or SIGTERM came (facemask.cli)."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_if_stopped()

    on_test_batch_end = on_predict_batch_end = on_train_batch_end


def in_progress(checkpoint: Path) -> Path:
    """Where training checkpoints `checkpoint` as it goes: a hidden name beside it, removed at the end, so
    a stopped run leaves the previous model and its sidecar as they were."""
    return checkpoint.with_name(f".{checkpoint.stem}.in-progress{checkpoint.suffix}")


class CheckpointInProgress(keras.callbacks.ModelCheckpoint):
    """The best epoch so far saved to `in_progress(checkpoint)` (insurance against a crash), removed when
    fit ends; the model is saved under its own name, with its sidecar, once training is over."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(in_progress(checkpoint), monitor="val_loss", save_best_only=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        super().on_train_end(logs)
        Path(self.filepath).unlink(missing_ok=True)


def callbacks_for(patience: int, checkpoint: Path | None = None) -> list[keras.callbacks.Callback]:
    """Early stopping on validation loss with the best weights restored, an optional checkpoint (written
    to `in_progress(checkpoint)`), and the stop on a signal.

    Before stopping, the learning rate is cut `LR_DROP`-fold whenever validation loss stalls for
    `lr_patience(patience)` epochs: at a fixed rate the loss keeps bouncing around its floor.
    """
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=1 / LR_DROP, patience=lr_patience(patience),
                                          min_lr=1e-7, verbose=1),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True, verbose=1),
    ]
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(CheckpointInProgress(checkpoint))
    return callbacks + [StopOnSignal()]


def history_dict(*histories: keras.callbacks.History) -> dict[str, list[float]]:
    """Per-epoch metrics as plain floats, phases concatenated in order (JSON-ready)."""
    merged: dict[str, list[float]] = {}
    for history in histories:
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(float(value) for value in values)
    return merged


def save_history(history: dict, path: Path) -> Path:
    return save_json(path, history)


def config_for(config: TrainConfig, archs: tuple[str, ...]) -> TrainConfig:
    """The resolved config, if it is for one of `archs` (a sidecar must not say vgg16 of a scratch model) and
    its folders and weights file exist."""
    if config.arch not in archs:
        raise ValueError(f"this trains {' or '.join(archs)}, but the config's arch is {config.arch}; "
                         "use train(config)")
    config.check_files()
    return config.resolved()


def weights_by_class(config: TrainConfig) -> dict[int, float] | None:
    """Class weights over everything trained on, or None when the config turns them off."""
    if not config.class_weights:
        return None
    return class_weights(config.data / "train", extra_dirs=config.extra_train, extra_weight=config.extra_weight)


def loss_weights(config: TrainConfig) -> dict[int, float] | None:
    """Each class's weight in the loss, for the training batches to carry; None when every crop weighs 1."""
    weights = weights_by_class(config)
    if weights is None and config.extra_train and config.extra_weight != 1:
        weights = {0: 1.0, 1: 1.0}  # no class weights, but the extra crops still weigh extra_weight
    return weights


def input_size(config: TrainConfig) -> tuple[int, int]:
    """The model's input (height, width): the config's square."""
    side = config.resolved().image_size
    return side, side


def training_splits(config: TrainConfig, image_size: tuple[int, int], augment: bool,
                    weighted: bool = True) -> dict[str, tf.data.Dataset]:
    """The train (with any extra folders) and valid splits; `augment` and the loss weights (`weighted`:
    class weights, extra crops' weight) apply to train only."""
    return load_datasets(config.data, config.batch_size, image_size, augment=augment, subset=config.subset,
                         seed=config.seed, splits=("train", "valid"), extra_train=config.extra_train,
                         augmentations=config.augmentations, weights=loss_weights(config) if weighted else None,
                         extra_weight=config.extra_weight)


def validation_threshold(model: keras.Model, valid: tf.data.Dataset) -> tuple[float, dict]:
    """The decision threshold chosen on the validation split (`serving_threshold`), and
    what it gives there: {"no_mask_threshold", "valid_balanced_accuracy", "valid_balanced_accuracy_at_0.5"}."""
    labels, probabilities = [], []
    for images, onehot in valid:
        raise_if_stopped()
        probabilities.append(np.asarray(model.predict_on_batch(images), dtype=np.float32))
        labels.append(onehot.numpy().argmax(axis=1))
    labels, probabilities = np.concatenate(labels), np.concatenate(probabilities)
    threshold = serving_threshold(labels, probabilities[:, 1])
    return threshold, {
        "no_mask_threshold": threshold,
        "valid_balanced_accuracy": compute_metrics(labels, probabilities, threshold=threshold)["balanced_accuracy"],
        "valid_balanced_accuracy_at_0.5": compute_metrics(labels, probabilities)["balanced_accuracy"],
    }


def save_trained(model: keras.Model, config: TrainConfig, valid: tf.data.Dataset, histories: tuple,
                 extra_history: dict | None = None) -> dict:
    """Choose the threshold on `valid`, save `<out>/<arch>.keras` with its sidecar and the history JSON
    (with the threshold's record); return the history."""
    threshold, choice = validation_threshold(model, valid)
    record = training_record(config) | {"threshold": choice}
    save_model(model, config.out / f"{config.arch}.keras", training=record, no_mask_threshold=threshold)
    history = history_dict(*histories) | (extra_history or {})
    save_history(history, config.out / f"{config.arch}_history.json")
    return history


def train_scratch(config: TrainConfig, *, verbose: int = 2) -> tuple[keras.Model, dict]:
    """Train a network from scratch, the compact CNN or the seed's scratch CNN (`config.arch`); writes
    `<out>/<arch>.keras` (+ its .json sidecar, with the threshold chosen on validation) and `<arch>_history.json`.
    """
    image_size = input_size(config)
    config = config_for(config, tuple(FROM_SCRATCH))
    keras.utils.set_random_seed(config.seed)
    datasets = training_splits(config, image_size, augment=True)
    with precision_policy(config.precision), distribution_strategy(config.distribute).scope():
        model = compile_model(FROM_SCRATCH[config.arch](image_size), config.learning_rate)
    checkpoint = config.out / f"{config.arch}.keras"
    history = model.fit(datasets["train"], validation_data=datasets["valid"], epochs=config.epochs, shuffle=False,
                        callbacks=callbacks_for(config.patience, checkpoint), verbose=verbose)
    # EarlyStopping restored the best epoch's weights; save them again with the sidecar.
    return model, save_trained(model, config, datasets["valid"], (history,))


def compute_features(extractor: keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Run the frozen base once over a (non-augmented) dataset: (features float32, one-hot labels)."""
    trace_for_any_batch_size(extractor)  # one graph for every batch, the smaller last one included
    features, labels = [], []
    for images, onehot in dataset:
        raise_if_stopped()
        features.append(np.asarray(extractor.predict_on_batch(images), dtype=np.float32))
        labels.append(onehot.numpy())
    return np.concatenate(features), np.concatenate(labels)


# What a phase trains on: a tf.data dataset of images, or (features, one-hot labels) in memory.
TrainingData = tf.data.Dataset | tuple[np.ndarray, np.ndarray]


@dataclass
class VGG16Training:
    """VGG16's two phases, step by step, as `train_vgg16` runs them and the notebook shows them:

        vgg16 = VGG16Training.start(config)
        head, train, valid = vgg16.phase1_inputs()      # phase 1: the base frozen, only the head learns
        vgg16.compile(head, vgg16.config.learning_rate)
        phase1 = vgg16.fit(head, train, valid, vgg16.config.epochs)
        vgg16.open_base()                               # phase 2: the base (or its top) opened,
        vgg16.compile(vgg16.model, vgg16.config.fine_tune_learning_rate)   # recompiled, at a low rate
        phase2 = vgg16.fit(vgg16.model, vgg16.datasets["train"], vgg16.datasets["valid"],
                           vgg16.config.fine_tune_epochs)
        model, history = vgg16.finish(phase1, phase2)

    Under `distribute`, every model (the full one, the head, the feature extractor) is made and
    compiled in the strategy's scope.
    """

    config: TrainConfig  # resolved
    model: keras.Model
    strategy: tf.distribute.Strategy
    datasets: dict[str, tf.data.Dataset]  # "train" (augmented) and "valid"
    class_weight: dict[int, float] | None
    image_size: tuple[int, int]
    verbose: int

    @classmethod
    def start(cls, config: TrainConfig, *, verbose: int = 2) -> VGG16Training:
        """VGG16 built with `config.weights`, its base frozen; the augmented training split and the
        validation split; the class weights. Raises WeightsUnavailable when the ImageNet weights cannot
        be downloaded."""
        image_size = input_size(config)
        config = config_for(config, ("vgg16",))
        keras.utils.set_random_seed(config.seed)
        class_weight = weights_by_class(config)
        datasets = training_splits(config, image_size, augment=True)
        strategy = distribution_strategy(config.distribute)
        with precision_policy(config.precision), strategy.scope():
            model = build_vgg16(config.weights, image_size)
        return cls(config, model, strategy, datasets, class_weight, image_size, verbose)

    @property
    def checkpoint(self) -> Path:
        return self.config.out / "vgg16.keras"

    def phase1_inputs(self) -> tuple[keras.Model, TrainingData, TrainingData]:
        """What phase 1 trains, on what training and validation data, by `config.recipe`.

        cached-features: the frozen base gives the same features for an image every epoch, so it
        computes them once and the head alone (which shares its layers, so its weights, with the full
        model) trains on them: minutes instead of hours on a CPU. The price: no augmentation in this
        phase (augmented images would need their features recomputed every epoch), and the classes are
        weighed but extra crops count as much as the data folder's (--extra-weight acts in phase 2).
        full: the whole model, on augmented images; only the head's weights are trainable.
        """
        if self.config.recipe == "full":
            return self.model, self.datasets["train"], self.datasets["valid"]
        plain = training_splits(self.config, self.image_size, augment=False, weighted=False)
        with self.strategy.scope():
            extractor = vgg16_features(self.model)
        train = compute_features(extractor, plain["train"])
        valid = compute_features(extractor, plain["valid"])
        with self.strategy.scope():
            head = vgg16_head(self.model)
        return head, train, valid

    def compile(self, model: keras.Model, learning_rate: float) -> keras.Model:
        """`compile_model` in the strategy's scope, where the optimizer's variables must be made."""
        with self.strategy.scope():
            return compile_model(model, learning_rate)

    def fit(self, model: keras.Model, train: TrainingData, valid: TrainingData,
            epochs: int) -> keras.callbacks.History:
        """One phase: early stopping and learning-rate drops on validation loss, the class weights; the
        full model is checkpointed at its best epoch (the head alone is not a model to keep)."""
        callbacks = callbacks_for(self.config.patience, self.checkpoint if model is self.model else None)
        if isinstance(train, tuple):  # features in memory: Keras batches, shuffles and weighs them
            (x, y), options = train, {"batch_size": self.config.batch_size, "shuffle": True,
                                      "class_weight": self.class_weight}
        else:  # the dataset's batches carry their loss weights (training_splits)
            (x, y), options = (train, None), {"shuffle": False}
        return model.fit(x, y, validation_data=valid, epochs=epochs, callbacks=callbacks, verbose=self.verbose,
                         **options)

    def open_base(self) -> list[str]:
        """Phase 2's unfreezing: the base from `config.fine_tune_from` upwards ("all": the whole of it).
        Returns the base's layers that now learn; compile again for Keras to notice."""
        block = self.config.fine_tune_from
        return unfreeze_vgg16(self.model, None if block == "all" else block)

    def finish(self, phase1: keras.callbacks.History,
               phase2: keras.callbacks.History) -> tuple[keras.Model, dict]:
        """Save `<out>/vgg16.keras` (+ .json sidecar, with the threshold chosen on validation) and
        vgg16_history.json, whose "phase" entry says
        1 or 2 per epoch; the model and that history."""
        phases = {"phase": [1] * len(phase1.epoch) + [2] * len(phase2.epoch)}
        return self.model, save_trained(self.model, self.config, self.datasets["valid"], (phase1, phase2), phases)


def train_vgg16(config: TrainConfig, *, verbose: int = 2) -> tuple[keras.Model, dict]:
    """Fine-tune VGG16 in two phases by `config.recipe`; writes `<out>/vgg16.keras` (+ .json), vgg16_history.json."""
    vgg16 = VGG16Training.start(config, verbose=verbose)
    # Phase 1: the base is frozen (build_vgg16 leaves it so); only the new head learns.
    head, train, valid = vgg16.phase1_inputs()
    vgg16.compile(head, vgg16.config.learning_rate)
    phase1 = vgg16.fit(head, train, valid, vgg16.config.epochs)
    # Phase 2: open the base (or its top blocks), recompile - without it the change is ignored -
    # and continue at a very low learning rate so the pretrained filters are nudged, not wrecked.
    vgg16.open_base()
    vgg16.compile(vgg16.model, vgg16.config.fine_tune_learning_rate)
    phase2 = vgg16.fit(vgg16.model, vgg16.datasets["train"], vgg16.datasets["valid"], vgg16.config.fine_tune_epochs)
    return vgg16.finish(phase1, phase2)


def train(config: TrainConfig, *, verbose: int = 2) -> tuple[keras.Model, dict]:
    """Train the network `config.arch` names: `train_scratch` (compact, scratch) or `train_vgg16`.

    SIGINT or SIGTERM stops it at the end of a batch (StopOnSignal), never inside a checkpoint or the
    model being saved (deferred_stop); the checkpoint in progress is removed then too.
    """
    trainer = train_vgg16 if config.arch == "vgg16" else train_scratch
    try:
        with deferred_stop():
            return trainer(config, verbose=verbose)
    finally:
        in_progress(Path(config.out) / f"{config.arch}.keras").unlink(missing_ok=True)


def describe_training_data(train_dir: Path, extra_train: Sequence[Path]) -> str:
    """`training on 1,000 crops: 800 in data/train + 200 in DIR`: what the model will learn from."""
    counts = [(folder, len(split_files([folder])[0])) for folder in (train_dir, *extra_train)]
    parts = " + ".join(f"{count:,} in {folder}" for folder, count in counts)
    return f"training on {sum(count for _, count in counts):,} crops: {parts}"


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)  # a bad option exits 2 here, with one `error:` line
    try:
        config.check_files()
    except (DataError, ValueError) as error:
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
    run(main)
