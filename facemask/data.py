"""The input pipeline: crop folders to batched, cached, augmented `tf.data` datasets.

A data folder holds `train/`, `valid/` and `test/`, each with one sub-folder per class
(`mask/`, `no-mask/`), as `split.py` writes it. Each split is read by
`keras.utils.image_dataset_from_directory` (RGB, resized to 224x224 bilinear, labels one-hot in
`CLASS_NAMES` order), cached in memory, batched and prefetched. The training split alone is
augmented with Keras preprocessing layers - horizontal flip, rotation up to 40 degrees, shifts up
to 10% - the seed's `ImageDataGenerator` recipe; Keras 3 dropped `ImageDataGenerator` and
documents these layers as its replacement. Pixels stay float32 in 0-255: each model rescales
inside itself.

    python -m facemask.data counts data                      # images per split and class
    python -m facemask.data link-split ../shared/datasets/crops /tmp/crops-split --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from facemask import CLASS_NAMES, IMAGE_SIZE

SPLITS = ("train", "valid", "test")
# The extensions image_dataset_from_directory reads; counting anything else would mislead.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
# The seed's ImageDataGenerator(rotation_range=40, width_shift_range=0.1, height_shift_range=0.1,
# horizontal_flip=True); RandomRotation takes a fraction of a full turn.
ROTATION_DEGREES = 40
SHIFT_FRACTION = 0.1


class DataError(ValueError):
    """A data folder that cannot be trained on; the message names the folder and the problem."""


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder` (symlinks included), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def count_images(data_dir: Path | str, splits: Sequence[str] = SPLITS,
                 class_names: Sequence[str] = CLASS_NAMES) -> pd.DataFrame:
    """A table of image counts: one row per split, one column per class, plus a total column."""
    data_dir = Path(data_dir)
    rows = {split: [len(list_images(data_dir / split / name)) for name in class_names] for split in splits}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(class_names))
    table["total"] = table.sum(axis=1)
    table.index.name = "split"
    return table


def check_data_dir(data_dir: Path | str, splits: Sequence[str] = SPLITS,
                   class_names: Sequence[str] = CLASS_NAMES) -> None:
    """Raise DataError naming the first missing folder, empty split or class missing from train."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder not found: {data_dir}")
    for split in splits:
        split_dir = data_dir / split
        if not split_dir.is_dir():
            raise DataError(f"split folder not found: {split_dir} (expected {', '.join(splits)} in {data_dir})")
        for name in class_names:
            if not (split_dir / name).is_dir():
                raise DataError(f"class folder not found: {split_dir / name}")
        counts = {name: len(list_images(split_dir / name)) for name in class_names}
        if sum(counts.values()) == 0:
            raise DataError(f"no images in {split_dir} (looked for {', '.join(IMAGE_EXTENSIONS)} files)")
        # A class absent from training can be neither learned nor weighted.
        if split == "train" and min(counts.values()) == 0:
            empty = [name for name, count in counts.items() if count == 0]
            raise DataError(f"no training images in {', '.join(str(split_dir / name) for name in empty)}")


def class_weights(train_dir: Path | str, class_names: Sequence[str] = CLASS_NAMES) -> dict[int, float]:
    """Balanced weights n_samples / (n_classes * n_c), keyed by class index, from the files in train_dir."""
    counts = np.array([len(list_images(Path(train_dir) / name)) for name in class_names], dtype=np.float64)
    if counts.min() == 0:
        empty = [name for name, count in zip(class_names, counts, strict=True) if count == 0]
        raise DataError(f"cannot weight classes: no images in {', '.join(str(Path(train_dir) / n) for n in empty)}")
    weights = counts.sum() / (len(class_names) * counts)
    return {index: float(weight) for index, weight in enumerate(weights)}


def build_augmentation(seed: int | None = 0) -> keras.Sequential:
    """The training augmentation as Keras layers, filling exposed corners by repeating the edge
    ("nearest"), as ImageDataGenerator does. float32 even under a mixed-precision policy."""
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32"),
            keras.layers.RandomRotation(ROTATION_DEGREES / 360, fill_mode="nearest", seed=seed, dtype="float32"),
            keras.layers.RandomTranslation(SHIFT_FRACTION, SHIFT_FRACTION, fill_mode="nearest", seed=seed,
                                           dtype="float32"),
        ],
        name="augmentation",
    )


def load_split(split_dir: Path | str, batch_size: int = 32, image_size: tuple[int, int] = IMAGE_SIZE,
               augment: bool = False, shuffle: bool = False, subset: float = 1.0, seed: int = 0,
               class_names: Sequence[str] = CLASS_NAMES) -> tf.data.Dataset:
    """One split as batches of (images float32 (n, h, w, 3) in 0-255, one-hot labels (n, 2)).

    `subset` < 1 keeps a seeded random fraction of the files for quick runs. `shuffle` reshuffles
    every epoch; `augment` applies fresh random augmentations every epoch (training only).
    The returned dataset carries `class_names` and `num_images` attributes.
    """
    split_dir = Path(split_dir)
    if not 0 < subset <= 1:
        raise ValueError(f"subset must be a fraction in (0, 1], got {subset}")
    if not any(list_images(split_dir / name) for name in class_names):
        raise DataError(f"no images in {split_dir} (looked in {', '.join(class_names)} for image files)")
    # The validation_split mechanism is image_dataset_from_directory's own seeded random subset:
    # "training" keeps the first `subset` share of the shuffled file list.
    fraction_args = {"validation_split": 1 - subset, "subset": "training"} if subset < 1 else {}
    try:
        # Keras prints "Using N files for training." even for valid/test subsets: hide that line.
        with contextlib.redirect_stdout(io.StringIO()):
            images = keras.utils.image_dataset_from_directory(
                split_dir, labels="inferred", label_mode="categorical", class_names=list(class_names),
                color_mode="rgb", batch_size=None, image_size=image_size, interpolation="bilinear",
                shuffle=subset < 1, seed=seed, follow_links=True, verbose=False, **fraction_args,
            )
    except ValueError as error:  # missing class folders or no images at all
        raise DataError(f"{split_dir}: {error}") from error
    num_images = int(images.cardinality())
    # Cache decoded, resized pixels as uint8: 4x less memory than float32 (3,200 crops take about
    # 0.5 GB), and whole-number pixels like the uint8 images predict.to_model_input resizes with PIL.
    images = images.map(lambda x, y: (tf.cast(tf.round(tf.clip_by_value(x, 0, 255)), tf.uint8), y),
                        num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle:
        images = images.shuffle(num_images, seed=seed, reshuffle_each_iteration=True)
    images = images.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y),
                                          num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        augmentation = build_augmentation(seed)
        # After the cache, so every epoch draws new transformations. Sequential (no parallel calls):
        # the layers' seed generators advance in a fixed order, which keeps seeded runs repeatable;
        # prefetch still overlaps this with training.
        images = images.map(lambda x, y: (augmentation(x, training=True), y))
    images = images.prefetch(tf.data.AUTOTUNE)
    images.class_names = list(class_names)
    images.num_images = num_images
    return images


def load_datasets(data_dir: Path | str, batch_size: int = 32, image_size: tuple[int, int] = IMAGE_SIZE,
                  augment: bool = True, subset: float = 1.0, seed: int = 0,
                  splits: Sequence[str] = SPLITS) -> dict[str, tf.data.Dataset]:
    """{split: dataset} for a data folder; only "train" is shuffled and (if `augment`) augmented."""
    check_data_dir(data_dir, splits)
    return {
        split: load_split(Path(data_dir) / split, batch_size, image_size, augment=augment and split == "train",
                          shuffle=split == "train", subset=subset, seed=seed)
        for split in splits
    }


def link_split(source: Path | str, out: Path | str, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
               class_names: Sequence[str] = CLASS_NAMES) -> pd.DataFrame:
    """Split a flat folder of class folders (source/mask, source/no-mask) into out/{train,valid,test}.

    Stratified and seeded: each class is shuffled on its own and cut at the same fractions. The
    files are absolute symlinks, so the real data is never copied. The split is built in a temporary
    folder and renamed into place, so a failure leaves no half-written `out`. Returns the counts.
    """
    source, out = Path(source).resolve(), Path(out)
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or not np.isclose(sum(fractions), 1):
        raise ValueError(f"fractions must be {len(SPLITS)} non-negative numbers summing to 1, got {list(fractions)}")
    files = {name: list_images(source / name) for name in class_names}
    for name, paths in files.items():
        if not paths:
            raise DataError(f"no images in {source / name}")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"output folder {out} exists and is not empty; remove it or choose another")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(fractions)[:-1]
    for name, paths in files.items():
        order = rng.permutation(len(paths))
        bounds = [0, *np.round(cuts * len(paths)).astype(int), len(paths)]
        for split, start, stop in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
            target = staging / split / name
            target.mkdir(parents=True)
            for index in order[start:stop]:
                os.symlink(paths[index], target / paths[index].name)
    if out.exists():
        out.rmdir()
    staging.rename(out)
    return count_images(out, class_names=class_names)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facemask.data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    counts = commands.add_parser("counts", help="print images per split and class")
    counts.add_argument("data", type=Path)
    linker = commands.add_parser("link-split", help="split class folders 80/10/10 into a folder of symlinks")
    linker.add_argument("source", type=Path, help="folder with one sub-folder per class")
    linker.add_argument("out", type=Path, help="new folder for train/valid/test (outside the project)")
    linker.add_argument("--fractions", type=float, nargs=3, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VALID", "TEST"))
    linker.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "counts":
            check_data_dir(args.data)
            table = count_images(args.data)
        else:
            table = link_split(args.source, args.out, args.fractions, args.seed)
    except (DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
