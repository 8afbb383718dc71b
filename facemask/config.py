"""The training configuration: every setting of a training run, its default, help and check, once.

`facemask train` is generated from these fields (one option per field), the notebook's
parameters cell mirrors their defaults, each name in capitals (tests/test_notebook.py fails if the two
drift apart; `config_from_parameters` reads them), and
every saved model's sidecar records the configuration it was trained with (`training_record`).

    config = TrainConfig(arch="vgg16", data="data", weights=None, epochs=1)
    config.resolved().epochs, config.resolved().fine_tune_from   # 1, "block5"
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from facemask import DEFAULT_SEED, IMAGE_SIZE
from facemask.augment import ORIGINAL_AUGMENTATIONS, augmentation_text, parse_augmentations
from facemask.cli import ArgumentParser, number_in
from facemask.data import check_data_dir, check_extra_dirs
from facemask.models import COMPACT_SIZE, VGG_BLOCKS

ARCHS = ("compact", "scratch", "vgg16")
# Unset epochs mean the arch's own: the CNNs trained from scratch need many epochs to learn their filters
# (early stopping usually ends them sooner), VGG16's pretrained base only a few for its new head.
DEFAULT_EPOCHS = {"compact": 60, "scratch": 30, "vgg16": 10}
# Unset input sizes mean the arch's own: the original project's networks take 224x224, the compact one the
# size of the faces it serves.
DEFAULT_IMAGE_SIZE = {"compact": COMPACT_SIZE[0], "scratch": IMAGE_SIZE[0], "vgg16": IMAGE_SIZE[0]}
# Unset augmentations mean the arch's own: the original project's networks keep its recipe (flips, rotations,
# shifts); the compact network adds JPEG compression, the one augmentation whose gain on the validation parts of
# bench/crossval.py's folds was larger than its spread (hue hurt, blur was within the noise: bench/README.md).
DEFAULT_AUGMENT = dict.fromkeys(("scratch", "vgg16"), augmentation_text(ORIGINAL_AUGMENTATIONS)) | {
    "compact": augmentation_text((*ORIGINAL_AUGMENTATIONS, "jpeg"))}
PRECISIONS = {"float32": "float32", "bf16": "mixed_bfloat16"}  # the --precision name: Keras' dtype policy
# Each VGG16 recipe and the block phase 2 unfreezes from unless --fine-tune-from says otherwise.
RECIPE_FINE_TUNE_FROM = {"cached-features": "block5", "full": "all"}


def weights_name(text: str) -> str | None:
    """--weights: "imagenet", a file name, or "none" (random weights) as None; a None given in Python
    reaches this as "None" (see `checked`) and stays None."""
    return None if text.lower() == "none" else text


def augmentation_names(text: str) -> str:
    """--augment: the names checked and put in the order they are applied (facemask.augment), or "none"."""
    try:
        return augmentation_text(parse_augmentations(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def setting(default: Any, help: str, **argparse_options: Any) -> Any:
    """A TrainConfig field: its default, and its help, type, choices (argparse's own keywords)."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse_options})


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. VGG16-only fields are ignored (and recorded all the same) for scratch.

    None means "the default this depends on" (see `resolved`); paths may be given as strings.
    Bad values raise ValueError on construction, however the config is made.
    """

    arch: str = setting("compact", "the network: compact, a small CNN sized for the faces it serves (0.14 M "
                        "weights); scratch, the original project's CNN trained from scratch (12.9 M); vgg16, "
                        "VGG16's ImageNet base with a new head, fine-tuned in two phases", choices=ARCHS)
    data: Path = setting(Path("data"), "folder with train/, valid/, test/ of split.py's crops", type=Path)
    extra_train: tuple[Path, ...] = setting(
        (), "another crop folder (DIR/mask, DIR/no-mask) added to the training split only; repeatable "
        "(e.g. ../shared/datasets/crops)", type=Path, action="append", metavar="DIR")
    extra_weight: float = setting(1.0, "the loss weight of each --extra-train crop, a crop of the data folder "
                                  "weighing 1", type=number_in(float, 0, above=True))
    image_size: int | None = setting(None, "side of the square the faces are resized to, in px; None: the arch's "
                                     "own, " + ", ".join(f"{size} for {arch}" for arch, size in
                                                         DEFAULT_IMAGE_SIZE.items()), type=number_in(int, 32))
    augment: str | None = setting(None, "the training augmentations, comma-separated (see facemask/augment.py), or "
                                  "none; None: the arch's own, " + "; ".join(f"{names} for {arch}" for arch, names
                                                                            in DEFAULT_AUGMENT.items()),
                                  type=augmentation_names, metavar="NAMES")
    out: Path = setting(Path("models"), "folder for the .keras model, its JSON sidecar and the history", type=Path)
    reports: Path = setting(Path("reports"), "folder for the test-set reports", type=Path)
    epochs: int | None = setting(None, "maximum epochs (VGG16: of phase 1); None: the arch's own, "
                                 + ", ".join(f"{epochs} for {arch}" for arch, epochs in DEFAULT_EPOCHS.items()),
                                 type=number_in(int, 1))
    batch_size: int = setting(32, "images per training step (under --distribute, split among the GPUs)",
                              type=number_in(int, 1))
    learning_rate: float = setting(1e-3, "Adam's learning rate (VGG16: of phase 1)",
                                   type=number_in(float, 0, above=True))
    patience: int = setting(10, "early-stopping patience in epochs; the learning rate drops 5x after half of it",
                            type=number_in(int, 0))
    class_weights: bool = setting(True, "weight the classes by their rarity in the training crops")
    seed: int = setting(DEFAULT_SEED, "seed of the weights' initialisation, shuffling and augmentation",
                        type=number_in(int, 0, 2**32 - 1))
    subset: float = setting(1.0, "fraction of each split to use (quick runs)",
                            type=number_in(float, 0, 1, above=True))
    precision: str = setting("float32", "bf16: mixed bfloat16, faster on CPUs with AVX512-BF16 and recent GPUs, "
                             "several times slower on other CPUs", choices=tuple(PRECISIONS))
    distribute: bool = setting(False, "train under tf.distribute.MirroredStrategy across all GPUs of this machine "
                               "(--batch-size is then split among them); on a CPU-only machine, one replica. "
                               "Several machines need MultiWorkerMirroredStrategy (see facemask/train.py)")
    weights: str | None = setting("imagenet", "VGG16 base weights: imagenet (Keras downloads them once), none "
                                  "(random: tests only), or a local ..._notop.h5 file", type=weights_name)
    recipe: str = setting(
        "cached-features", "VGG16 recipe. cached-features: the frozen base computes every crop's features once "
        "and phase 1 trains the head on them (fast, but no augmentation in phase 1), then phase 2 "
        "unfreezes block5; practical on a CPU. full: the Keras recipe, both phases on augmented images and "
        "phase 2 unfreezes the whole base; for a GPU (slow on a CPU: bench/README.md)",
        choices=tuple(RECIPE_FINE_TUNE_FROM))
    fine_tune_epochs: int | None = setting(None, "maximum epochs of VGG16's phase 2; None: as many as --epochs",
                                           type=number_in(int, 1))
    fine_tune_learning_rate: float = setting(1e-5, "Adam's learning rate in VGG16's phase 2 (base unfrozen)",
                                             type=number_in(float, 0, above=True))
    fine_tune_from: str | None = setting(
        None, "VGG16 phase 2: the first block to unfreeze, or all; None: the recipe's, "
        + ", ".join(f"{block} for {recipe}" for recipe, block in RECIPE_FINE_TUNE_FROM.items()),
        choices=("all", *VGG_BLOCKS))

    def __post_init__(self) -> None:
        # The command line's own types and choices check every value, so a config built in Python (the
        # notebook, the tests, a sidecar read back) is held to exactly what the command accepts.
        for item in fields(self):
            try:
                value = checked(item, getattr(self, item.name))
            except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
                raise ValueError(f"{item.name}: {error}") from None
            object.__setattr__(self, item.name, value)  # frozen: normalised once, here

    def resolved(self) -> TrainConfig:
        """The same run with every None spelled out: what the training functions run, and what the
        model's sidecar records."""
        epochs = DEFAULT_EPOCHS[self.arch] if self.epochs is None else self.epochs
        return dataclasses.replace(
            self, epochs=epochs, fine_tune_epochs=epochs if self.fine_tune_epochs is None else self.fine_tune_epochs,
            fine_tune_from=self.fine_tune_from or RECIPE_FINE_TUNE_FROM[self.recipe],
            image_size=self.image_size or DEFAULT_IMAGE_SIZE[self.arch],
            augment=self.augment or DEFAULT_AUGMENT[self.arch])

    @property
    def augmentations(self) -> tuple[str, ...]:
        """The augmentation names of the resolved `augment`, in the order they are applied."""
        return parse_augmentations(self.resolved().augment)

    def check_files(self) -> None:
        """Check the folders and the weights file exist, before any model is built: DataError/ValueError.

        Not a construction check: the notebook makes its config before it cuts the data folder.
        """
        check_data_dir(self.data)
        check_extra_dirs(self.extra_train)
        if self.arch == "vgg16" and self.weights not in ("imagenet", None) and not Path(self.weights).is_file():
            raise ValueError(f"VGG16 weights file not found: {self.weights}")

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values (paths as strings); `TrainConfig(**config.to_json())` gives it back."""
        def plain(value: Any) -> Any:
            if isinstance(value, tuple):
                return [plain(item) for item in value]
            return str(value) if isinstance(value, Path) else value

        return {item.name: plain(getattr(self, item.name)) for item in fields(self)}


def checked(item: dataclasses.Field, value: Any) -> Any:
    """One field's value, converted and checked as its command-line option would be."""
    options = item.metadata
    if value is None and item.default is None:
        return None
    if isinstance(item.default, bool):
        if not isinstance(value, bool):
            raise TypeError(f"must be True or False, not {value!r}")
        return value
    if isinstance(item.default, tuple):  # a repeatable option: a sequence of paths
        if isinstance(value, (str, Path)):
            raise TypeError(f"must be a list of folders, not the single {value!r}")
        return tuple(Path(folder) for folder in value)
    if isinstance(value, bool):  # bool is an int, and str(True) would be parsed as a name
        raise TypeError(f"must not be {value}")
    if "type" in options:
        value = options["type"](str(value))
    if "choices" in options and value not in options["choices"]:
        raise ValueError(f"{value!r} is not one of {', '.join(options['choices'])}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """`facemask train`: one option per TrainConfig field, with the field's default and help."""
    parser = ArgumentParser(prog="facemask train",
                            description="Train the compact CNN or the scratch CNN, or fine-tune VGG16, on split.py's "
                                        "crops, choose the decision threshold on the validation split, then "
                                        "evaluate the model on the test split.")
    for item in fields(TrainConfig):
        flag = "--" + item.name.replace("_", "-")
        if isinstance(item.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=item.default,
                                help=item.metadata["help"])
        else:
            # A list for the repeatable option: argparse appends to its default.
            default = list(item.default) if isinstance(item.default, tuple) else item.default
            parser.add_argument(flag, default=default, **item.metadata)
    return parser


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """The config the command line asks for; a usage error prints one `error:` line and exits 2."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    # --model names a model file in every other command, so say what train takes instead of argparse's
    # "unrecognized arguments".
    if any(arg == "--model" or arg.startswith("--model=") for arg in argv):
        parser.error(f"--model names a model file; choose the network to train with --arch {'|'.join(ARCHS)}")
    args = parser.parse_args(argv)
    try:
        return TrainConfig(**vars(args))
    except ValueError as error:
        parser.error(str(error))


def config_from_parameters(parameters: Mapping[str, Any], **overrides: Any) -> TrainConfig:
    """The config the notebook's parameters name: each field as its name in capitals (DATA,
    FINE_TUNE_EPOCHS, ...) from `parameters` (the notebook's globals()), then `overrides`."""
    values = {item.name: parameters[item.name.upper()] for item in fields(TrainConfig)
              if item.name.upper() in parameters}
    return TrainConfig(**{**values, **overrides})


def training_record(config: TrainConfig) -> dict[str, Any]:
    """What a model's sidecar says about its training: the resolved config and the library versions."""
    import keras
    import tensorflow as tf

    return {"config": config.resolved().to_json(),
            "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                         "keras": keras.__version__}}
