"""The input pipeline: shapes, labels and class order, augmentation on train only, weights, extra training
folders, and the count command."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from facemask import CLASS_NAMES, SPLITS
from facemask.count import main as count_main
from facemask.data import (
    DataError,
    check_data_dir,
    class_weights,
    count_images,
    load_datasets,
    load_split,
)

# Noise tinted by class: red-dominant faces are "mask", blue-dominant "no-mask", so a label can be
# checked against its own pixels. Noise (not flat colour) makes every flip and shift visible.
TINTS = {"mask": (1.0, 0.2, 0.2), "no-mask": (0.2, 0.2, 1.0)}
COUNTS = {"train": {"mask": 6, "no-mask": 3}, "valid": {"mask": 2, "no-mask": 2}, "test": {"mask": 3, "no-mask": 1}}


def write_images(folder: Path, label: str, count: int, rng: np.random.Generator, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        noise = rng.uniform(60, 255, (30, 40, 1)) * np.array(TINTS[label])
        Image.fromarray(noise.astype(np.uint8)).save(folder / f"{label}-{i:03d}.png")


@pytest.fixture
def data_dir(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    for split, per_class in COUNTS.items():
        for label, count in per_class.items():
            write_images(tmp_path / "data" / split / label, label, count, rng)
    (tmp_path / "data" / "train" / "mask" / "notes.txt").write_text("not an image")
    return tmp_path / "data"


def all_batches(dataset) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(x.numpy(), y.numpy()) for x, y in dataset]
    return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])


def test_count_images_table(data_dir):
    table = count_images(data_dir)
    assert list(table.index) == list(SPLITS)
    assert list(table.columns) == [*CLASS_NAMES, "total"]
    assert table.loc["train", "mask"] == 6 and table.loc["train", "total"] == 9  # notes.txt is not counted
    assert table["total"].sum() == sum(sum(c.values()) for c in COUNTS.values())


def test_batches_are_float_pixels_with_one_hot_labels_in_class_order(data_dir):
    datasets = load_datasets(data_dir, batch_size=4, augment=False)
    images, labels = next(iter(datasets["valid"]))
    assert images.shape == (4, 224, 224, 3) and images.dtype.name == "float32"
    assert labels.shape == (4, 2)
    images, labels = all_batches(datasets["test"])
    assert images.shape[0] == datasets["test"].num_images == 4
    assert images.min() >= 0 and images.max() <= 255 and images.max() > 1  # raw 0-255, not rescaled
    assert {tuple(row) for row in labels} <= {(1.0, 0.0), (0.0, 1.0)}
    # A file in mask/ (red) must come out as [1, 0], one in no-mask/ (blue) as [0, 1].
    red_dominant = images[..., 0].mean(axis=(1, 2)) > images[..., 2].mean(axis=(1, 2))
    np.testing.assert_array_equal(labels[:, 0] == 1, red_dominant)
    assert labels[:, 0].sum() == COUNTS["test"]["mask"]


def test_augmentation_changes_training_batches_only(data_dir):
    keras.utils.set_random_seed(0)  # as training does: a global seed must not freeze the augmentations
    augmented = load_split(data_dir / "train", batch_size=16, augment=True, shuffle=False)
    plain = load_split(data_dir / "train", batch_size=16, augment=False, shuffle=False)
    first, labels = all_batches(augmented)
    second, _ = all_batches(augmented)
    original, original_labels = all_batches(plain)
    np.testing.assert_array_equal(labels, original_labels)
    assert first.shape == original.shape and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 255
    # Every image is transformed, and differently in each epoch (augmentation sits after the cache).
    assert all(not np.allclose(a, b) for a, b in zip(first, original, strict=True))
    assert all(not np.allclose(a, b) for a, b in zip(first, second, strict=True))
    # The evaluation splits come back pixel-identical on every pass.
    datasets = load_datasets(data_dir, batch_size=16, augment=True)
    for split in ("valid", "test"):
        np.testing.assert_array_equal(all_batches(datasets[split])[0], all_batches(datasets[split])[0])


def test_training_split_is_reshuffled_each_epoch_and_seeded(data_dir):
    def epochs(seed: int) -> list[np.ndarray]:
        dataset = load_split(data_dir / "train", batch_size=16, shuffle=True, seed=seed)
        return [all_batches(dataset)[0].mean(axis=(1, 2, 3)) for _ in range(3)]

    run = epochs(seed=3)
    assert any(not np.array_equal(run[0], other) for other in run[1:])  # new order per epoch
    for ours, again in zip(run, epochs(seed=3), strict=True):  # same seed, same sequence of orders
        np.testing.assert_array_equal(ours, again)


def test_augmentation_is_seeded(data_dir):
    def first_pass(seed: int) -> np.ndarray:
        return all_batches(load_split(data_dir / "train", batch_size=16, augment=True, seed=seed))[0]

    np.testing.assert_array_equal(first_pass(5), first_pass(5))
    assert not np.allclose(first_pass(5), first_pass(6))


def test_subset_takes_a_seeded_fraction(data_dir):
    rng = np.random.default_rng(1)
    write_images(data_dir / "train" / "mask", "mask", 14, rng, start=100)
    write_images(data_dir / "train" / "no-mask", "no-mask", 17, rng, start=100)  # 40 training images
    quarter = load_split(data_dir / "train", batch_size=64, subset=0.25, seed=0)
    assert quarter.num_images == 10
    images, _ = all_batches(quarter)
    again, _ = all_batches(load_split(data_dir / "train", batch_size=64, subset=0.25, seed=0))
    np.testing.assert_array_equal(images, again)
    with pytest.raises(ValueError, match="subset"):
        load_split(data_dir / "train", subset=0)


def test_class_weights_from_folder(data_dir):
    weights = class_weights(data_dir / "train")
    # n_samples / (n_classes * n_c) with 6 mask and 3 no-mask images.
    assert weights == pytest.approx({0: 9 / (2 * 6), 1: 9 / (2 * 3)})
    for path in (data_dir / "train" / "no-mask").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="no-mask"):
        class_weights(data_dir / "train")


@pytest.mark.parametrize(
    ("damage", "expected"),
    [("no data folder", "data folder not found"), ("no valid split", "split folder not found"),
     ("no test/no-mask", "class folder not found")],
)
def test_check_data_dir_names_the_missing_folder(data_dir, damage, expected):
    target = data_dir
    if damage == "no data folder":
        target = data_dir / "nowhere"
    elif damage == "no valid split":
        (data_dir / "valid").rename(data_dir / "validation")
    else:
        (data_dir / "test" / "no-mask").rename(data_dir / "test" / "nomask")
    with pytest.raises(DataError, match=expected) as error:
        check_data_dir(target)
    missing = {"no data folder": target, "no valid split": data_dir / "valid",
               "no test/no-mask": data_dir / "test" / "no-mask"}[damage]
    assert str(missing) in str(error.value)


def test_check_data_dir_rejects_an_empty_split_and_a_class_missing_from_train(data_dir):
    check_data_dir(data_dir)  # the intact folder passes
    for path in (data_dir / "test").glob("*/*.png"):
        path.unlink()
    with pytest.raises(DataError, match=f"no images in {data_dir / 'test'}"):
        check_data_dir(data_dir)
    with pytest.raises(DataError, match="no images"):
        load_split(data_dir / "test")
    write_images(data_dir / "test" / "mask", "mask", 1, np.random.default_rng(0))
    for path in (data_dir / "train" / "mask").glob("*.png"):
        path.unlink()
    with pytest.raises(DataError, match=f"no training images in {data_dir / 'train' / 'mask'}"):
        check_data_dir(data_dir)


def test_counts_command_prints_the_table_or_names_the_missing_folder(data_dir, tmp_path, capsys):
    assert count_main([str(data_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [*CLASS_NAMES, "total"]
    assert {line.split()[0]: line.split()[1:] for line in lines[2:]} == {
        split: [str(COUNTS[split]["mask"]), str(COUNTS[split]["no-mask"]), str(sum(COUNTS[split].values()))]
        for split in SPLITS}
    assert count_main([str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err == f"error: data folder not found: {tmp_path / 'missing'}\n"


# ---------------------------------------------------------------- extra training folders


def test_extra_training_folders_join_the_training_split_only(data_dir, tmp_path):
    rng = np.random.default_rng(2)
    extra = tmp_path / "extra"
    write_images(extra / "no-mask", "no-mask", 5, rng)  # an extra folder may hold one class only
    datasets = load_datasets(data_dir, batch_size=64, augment=False, extra_train=[extra])
    assert datasets["train"].num_images == 9 + 5
    assert datasets["valid"].num_images == 4 and datasets["test"].num_images == 4
    labels = all_batches(datasets["train"])[1]
    assert labels.sum(axis=0).tolist() == [6, 3 + 5]
    # Class weights count everything trained on: 6 mask and 8 no-mask.
    assert class_weights(data_dir / "train", extra_dirs=[extra]) == pytest.approx({0: 14 / 12, 1: 14 / 16})


@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_a_bad_extra_training_folder_is_named(data_dir, tmp_path, problem):
    extra = tmp_path / "extra"
    if problem == "empty":
        (extra / "mask").mkdir(parents=True)
    with pytest.raises(DataError, match=f"extra training folder.*{extra}"):
        load_datasets(data_dir, extra_train=[extra])


def test_an_unreadable_crop_stops_the_epoch_naming_the_file(data_dir):
    bad = data_dir / "valid" / "mask" / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(Exception, match="broken.png: not an image"):
        all_batches(load_split(data_dir / "valid"))
