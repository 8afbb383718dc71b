"""The input pipeline: crop folders to batched, cached, augmented `tf.data` datasets.

A data folder holds `train/`, `valid/` and `test/`, each with one sub-folder per class
(`mask/`, `no-mask/`), as `split.py` writes it. Each crop is read and resized by the functions that
serve the model (`facemask.images.load_image` and `to_model_input`: EXIF orientation, any mode to
RGB, Pillow's antialiased bilinear resize to 224x224), so training sees exactly the pixels detection
will feed it; labels are one-hot in `CLASS_NAMES` order. The resized pixels are cached in memory
after the first epoch, so later epochs decode nothing. Other crop folders (class sub-folders) can
be added to the training split alone (`extra_train`), each of their crops weighing
`extra_weight` of a crop of the data folder's own in the loss. The training split alone is augmented
with Keras preprocessing layers (facemask.augment: the original project's flips, rotations and shifts, and the
colour and resolution changes the cross-validation folds kept); Keras 3 dropped
`ImageDataGenerator` and documents these layers as its replacement. Pixels stay float32 in
0-255: each model rescales inside itself.

`split_files` is the one lister of a split's crops (the image files directly inside its class folders):
training, its class weights and checks, and the evaluation count the same files. `facemask count
data` prints the images per split and class.

Splitting is split.py's: it keeps every crop of a photo in one split, so near-duplicates never
straddle train and test.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from facemask import CLASS_NAMES, IMAGE_EXTENSIONS, IMAGE_SIZE, SPLITS
from facemask.augment import ORIGINAL_AUGMENTATIONS, build_augmentation
from facemask.images import load_image, to_model_input


class DataError(ValueError):
    """A data folder that cannot be trained on; the message names the folder and the problem."""


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside one class folder (symlinks included), sorted by name; `split_files` lists
    a whole split with it."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def count_images(data_dir: Path | str, splits: Sequence[str] = SPLITS,
                 class_names: Sequence[str] = CLASS_NAMES) -> pd.DataFrame:
    """A table of image counts: one row per split, one column per class, plus a total column."""
    data_dir = Path(data_dir)
    rows = {split: _class_counts(data_dir / split, class_names) for split in splits}
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
        counts = dict(zip(class_names, _class_counts(split_dir, class_names), strict=True))
        if sum(counts.values()) == 0:
            raise DataError(f"no images in {split_dir} (looked for {', '.join(IMAGE_EXTENSIONS)} files)")
        # A class absent from training can be neither learned nor weighted.
        if split == "train" and min(counts.values()) == 0:
            empty = [name for name, count in counts.items() if count == 0]
            raise DataError(f"no training images in {', '.join(str(split_dir / name) for name in empty)}")


def split_files(folders: Sequence[Path | str],
                class_names: Sequence[str] = CLASS_NAMES) -> tuple[list[Path], np.ndarray]:
    """The image files of `<folder>/<class>/` for every folder, in order, and their class indices."""
    files: list[Path] = []
    labels: list[int] = []
    for folder in folders:
        for index, name in enumerate(class_names):
            found = list_images(Path(folder) / name)
            files += found
            labels += [index] * len(found)
    return files, np.array(labels, dtype=np.int64)


def _class_counts(split_dir: Path, class_names: Sequence[str]) -> list[int]:
    """Images per class of one split folder, as `split_files` lists them."""
    _, labels = split_files([split_dir], class_names)
    return np.bincount(labels, minlength=len(class_names)).tolist()


def check_extra_dirs(folders: Sequence[Path | str], class_names: Sequence[str] = CLASS_NAMES) -> None:
    """Raise DataError unless every extra training folder holds class folders with images in them."""
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise DataError(f"extra training folder not found: {folder}")
        if not split_files([folder], class_names)[0]:
            raise DataError(f"no images in the extra training folder {folder} "
                            f"(looked in {', '.join(str(folder / name) for name in class_names)})")


def class_weights(train_dir: Path | str, class_names: Sequence[str] = CLASS_NAMES,
                  extra_dirs: Sequence[Path | str] = (), extra_weight: float = 1.0) -> dict[int, float]:
    """Balanced weights n_samples / (n_classes * n_c), keyed by class index, over every file trained on:
    the training split and the extra training folders, an extra crop counting `extra_weight` of one."""
    _, labels = split_files([train_dir], class_names)
    _, extra_labels = split_files(extra_dirs, class_names)
    counts = (np.bincount(labels, minlength=len(class_names))
              + extra_weight * np.bincount(extra_labels, minlength=len(class_names))).astype(np.float64)
    if counts.min() == 0:
        empty = [name for name, count in zip(class_names, counts, strict=True) if count == 0]
        raise DataError(f"cannot weight classes: no images in {', '.join(str(Path(train_dir) / n) for n in empty)}")
    weights = counts.sum() / (len(class_names) * counts)
    return {index: float(weight) for index, weight in enumerate(weights)}


def read_model_input(path: bytes | str | Path, image_size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """One crop file as the model is served it: `load_image` then `to_model_input`, as uint8 (h, w, 3).

    `to_model_input` gives whole numbers in float32; uint8 holds them exactly in a quarter of the memory.
    """
    image = load_image(os.fsdecode(path))
    return to_model_input([image], image_size)[0].astype(np.uint8)


def _decode_in_pipeline(path: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    # numpy_function runs the Python reader inside tf.data; Pillow releases the GIL while it decodes
    # and resizes, so parallel calls use both cores. Its errors (ImageError naming the file) stop the epoch.
    pixels = tf.numpy_function(functools.partial(read_model_input, image_size=image_size), [path], tf.uint8,
                               stateful=False)
    pixels.set_shape((*image_size, 3))
    return pixels


def load_split(split_dir: Path | str, batch_size: int = 32, image_size: tuple[int, int] = IMAGE_SIZE,
               augment: bool = False, shuffle: bool = False, subset: float = 1.0, seed: int = 0,
               class_names: Sequence[str] = CLASS_NAMES, extra_dirs: Sequence[Path | str] = (),
               augmentations: Sequence[str] = ORIGINAL_AUGMENTATIONS, weights: dict[int, float] | None = None,
               extra_weight: float = 1.0) -> tf.data.Dataset:
    """One split as batches of (images float32 (n, h, w, 3) in 0-255, one-hot labels (n, 2)).

    `extra_dirs` are more folders of class folders read with the split (training only). `subset` < 1
    keeps a seeded random fraction of the files for quick runs. `shuffle` reshuffles every epoch;
    `augment` applies fresh random `augmentations` (facemask.augment) every epoch (training only).
    Given class `weights` (class index -> weight), batches carry a third element, each crop's loss
    weight: its class's weight, times `extra_weight` for a crop of `extra_dirs`. The returned dataset
    carries `class_names` and `num_images` attributes.
    """
    split_dir = Path(split_dir)
    if not 0 < subset <= 1:
        raise ValueError(f"subset must be a fraction in (0, 1], got {subset}")
    own_files, own_labels = split_files([split_dir], class_names)
    extra_files, extra_labels = split_files(extra_dirs, class_names)
    if not own_files:
        raise DataError(f"no images in {split_dir} (looked in {', '.join(class_names)} for image files)")
    files, labels = own_files + extra_files, np.concatenate([own_labels, extra_labels])
    from_extra = np.arange(len(files)) >= len(own_files)
    if subset < 1:
        keep = np.sort(np.random.default_rng(seed).permutation(len(files))[:max(1, round(subset * len(files)))])
        files, labels, from_extra = [files[i] for i in keep], labels[keep], from_extra[keep]
    num_images = len(files)
    onehot = np.eye(len(class_names), dtype=np.float32)[labels]
    columns: tuple = ([str(path) for path in files], onehot)
    if weights is not None:
        loss_weights = np.array([weights[label] for label in labels], dtype=np.float32)
        columns += (np.where(from_extra, extra_weight * loss_weights, loss_weights).astype(np.float32),)
    images = tf.data.Dataset.from_tensor_slices(columns)
    # Cache the resized pixels as uint8 (3,200 crops take about 0.5 GB at 224 px): every epoch after the first
    # reads them from memory, so serving's Pillow reader costs training nothing after that.
    images = images.map(lambda path, *rest: (_decode_in_pipeline(path, image_size), *rest),
                        num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle:
        images = images.shuffle(num_images, seed=seed, reshuffle_each_iteration=True)
    images = images.batch(batch_size).map(lambda x, *rest: (tf.cast(x, tf.float32), *rest),
                                          num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        augmentation = build_augmentation(augmentations, seed)
        # After the cache, so every epoch draws new transformations. Sequential (no parallel calls):
        # the layers' seed generators advance in a fixed order, which keeps seeded runs repeatable;
        # prefetch still overlaps this with training.
        images = images.map(lambda x, *rest: (augmentation(x, training=True), *rest))
    images = images.prefetch(tf.data.AUTOTUNE)
    images.class_names = list(class_names)
    images.num_images = num_images
    return images


def load_datasets(data_dir: Path | str, batch_size: int = 32, image_size: tuple[int, int] = IMAGE_SIZE,
                  augment: bool = True, subset: float = 1.0, seed: int = 0,
                  splits: Sequence[str] = SPLITS, extra_train: Sequence[Path | str] = (),
                  augmentations: Sequence[str] = ORIGINAL_AUGMENTATIONS, weights: dict[int, float] | None = None,
                  extra_weight: float = 1.0) -> dict[str, tf.data.Dataset]:
    """{split: dataset} for a data folder; only "train" is shuffled, (if `augment`) augmented, weighted
    (given class `weights`) and joined by the `extra_train` crop folders: validation and test stay the
    data folder's own."""
    check_data_dir(data_dir, splits)
    check_extra_dirs(extra_train)
    return {
        split: load_split(Path(data_dir) / split, batch_size, image_size, augment=augment and split == "train",
                          shuffle=split == "train", subset=subset, seed=seed,
                          extra_dirs=extra_train if split == "train" else (), augmentations=augmentations,
                          weights=weights if split == "train" else None, extra_weight=extra_weight)
        for split in splits
    }
