"""Training: the scratch CNN learns the sample, the command line works and fails cleanly, VGG16's phases."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

import facemask.train
import facemask.training
from facemask import DEFAULT_MARGIN
from facemask.config import TrainConfig, build_parser, parse_config
from facemask.data import load_split
from facemask.models import load_model, vgg16_base
from facemask.sidecar import read_sidecar, sidecar_path
from facemask.train import main
from facemask.training import train_scratch, train_vgg16

SCRATCH_EPOCHS = 6  # enough for the easy synthetic sample at the real 224x224 size (a minute or two)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "facemask.train", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


def scratch_config(data, out) -> TrainConfig:
    # Patience covers the whole run: the sample's validation split is a handful of crops, too few
    # for early stopping to judge; restore_best_weights still picks the best epoch.
    return TrainConfig(arch="scratch", data=data, out=out, epochs=SCRATCH_EPOCHS, batch_size=16,
                       patience=SCRATCH_EPOCHS, seed=0)


@pytest.fixture(scope="module")
def trained_scratch(sample_crops, tmp_path_factory):
    out = tmp_path_factory.mktemp("scratch")
    model, history = train_scratch(scratch_config(sample_crops, out), verbose=0)
    return model, history, out


def predictions_on(model, split_dir) -> tuple[np.ndarray, np.ndarray]:
    dataset = load_split(split_dir, batch_size=32)
    labels = np.concatenate([y.numpy() for _, y in dataset]).argmax(axis=1)
    return labels, model.predict(dataset, verbose=0)


@pytest.mark.slow
def test_scratch_cnn_clearly_beats_chance_on_the_sample(trained_scratch, sample_crops):
    model, history, out = trained_scratch
    labels, probabilities = predictions_on(model, sample_crops / "test")
    predicted = probabilities.argmax(axis=1)
    recalls = [np.mean(predicted[labels == k] == k) for k in (0, 1)]
    # Chance is 0.5 balanced accuracy (and the majority share for plain accuracy).
    assert np.mean(recalls) >= 0.75, recalls
    assert np.mean(predicted == labels) > max(np.mean(labels), 1 - np.mean(labels))
    assert len(history["loss"]) == SCRATCH_EPOCHS and history["loss"][-1] < history["loss"][0]
    saved = json.loads((out / "scratch_history.json").read_text())
    assert set(saved) >= {"loss", "accuracy", "val_loss", "val_accuracy"} and saved == history


@pytest.mark.slow
def test_saved_scratch_model_predicts_the_same_after_loading(trained_scratch, sample_crops):
    model, _, out = trained_scratch
    loaded, class_names = load_model(out / "scratch.keras")
    assert class_names == ["mask", "no-mask"]
    images = np.concatenate([x.numpy() for x, _ in load_split(sample_crops / "test", batch_size=32)])
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    # The file holds the best epoch's weights (restored by early stopping), not the last epoch's.
    _, history, _ = trained_scratch
    best = int(np.argmin(history["val_loss"]))
    loaded.compile(loss="categorical_crossentropy")  # saved for inference: without its optimizer, uncompiled
    assert loaded.evaluate(load_split(sample_crops / "valid"), verbose=0, return_dict=True)["loss"] == pytest.approx(
        history["val_loss"][best], rel=1e-3)


@pytest.mark.slow
def test_the_sidecar_records_the_config_the_model_was_trained_with(trained_scratch, sample_crops):
    _, _, out = trained_scratch
    training = read_sidecar(sidecar_path(out / "scratch.keras"))["training"]
    # Resolved: the sidecar says what ran, not "None: the default" (a default can change later).
    assert TrainConfig(**training["config"]) == scratch_config(sample_crops, out).resolved()
    assert training["config"]["data"] == str(sample_crops) and training["config"]["epochs"] == SCRATCH_EPOCHS
    assert set(training["versions"]) == {"python", "tensorflow", "keras"}
    assert read_sidecar(sidecar_path(out / "scratch.keras"))["margin"] == DEFAULT_MARGIN  # split.py's default


def test_train_command_refuses_a_bad_margin_record_before_training(sample_crops, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(sample_crops, data)
    (data / "split.json").write_text('{"margin": "wide"}')
    assert main(["--arch", "scratch", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "models")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {data / 'split.json'}: 'margin' must be a number") and "Traceback" not in err
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_train_command_writes_model_history_and_reports(sample_crops, tmp_path):
    extra = sample_crops / "valid"  # any folder of class folders can join the training split
    result = run_cli("--arch", "scratch", "--data", str(sample_crops), "--epochs", "1", "--batch-size", "16",
                     "--subset", "0.5", "--out", str(tmp_path / "models"), "--reports", str(tmp_path / "reports"),
                     "--extra-train", str(extra))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val_accuracy" in result.stdout and "no-mask recall" in result.stdout
    train, more = (len(list(folder.glob("*/*.png"))) for folder in (sample_crops / "train", extra))
    assert f"training on {train + more:,} crops: {train:,} in {sample_crops / 'train'} + {more:,} in {extra}" in (
        result.stdout)
    for name in ("scratch.keras", "scratch.json", "scratch_history.json"):
        assert (tmp_path / "models" / name).is_file(), name
    metrics = json.loads((tmp_path / "reports" / "scratch_metrics.json").read_text())
    assert metrics["count"] == sum(1 for _ in (sample_crops / "test").glob("*/*"))
    recorded = read_sidecar(tmp_path / "models" / "scratch.json")["training"]["config"]
    assert recorded["extra_train"] == [str(extra)] and recorded["subset"] == 0.5 and recorded["epochs"] == 1


@pytest.mark.slow
def test_train_command_rejects_a_missing_data_folder(tmp_path):
    result = run_cli("--arch", "scratch", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "models"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: data folder not found: {tmp_path / 'nowhere'}"
    assert not (tmp_path / "models").exists()


def test_train_command_rejects_incomplete_data_folders(sample_crops, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "train" / "mask").mkdir(parents=True)
    (data / "train" / "no-mask").mkdir()
    assert main(["--arch", "scratch", "--data", str(data), "--out", str(tmp_path / "models")]) == 1
    assert capsys.readouterr().err.startswith(f"error: no images in {data / 'train'} ")
    assert main(["--arch", "vgg16", "--data", str(sample_crops), "--weights", str(tmp_path / "no.h5")]) == 1
    assert f"error: VGG16 weights file not found: {tmp_path / 'no.h5'}" in capsys.readouterr().err
    assert main(["--arch", "scratch", "--data", str(sample_crops), "--extra-train", str(tmp_path / "crops")]) == 1
    assert capsys.readouterr().err == f"error: extra training folder not found: {tmp_path / 'crops'}\n"
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_vgg16_offline_without_its_imagenet_weights_is_one_error_line(sample_crops, tmp_path):
    # Nothing cached in KERAS_HOME, and every download through a proxy that refuses: offline, anywhere.
    env = {name: value for name, value in os.environ.items() if name.lower() not in ("no_proxy", "https_proxy")}
    env |= {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT), "KERAS_HOME": str(tmp_path / "keras"),
            "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-m", "facemask.train", "--arch", "vgg16", "--weights", "imagenet",
                             "--data", str(sample_crops), "--subset", "0.2", "--out", str(tmp_path / "models")],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: VGG16's ImageNet weights could not be downloaded (URL fetch failure on https://")
    assert "WEIGHTS = None" in last and "--weights none" in last and "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()


# --- the configuration: one dataclass, the command line generated from it ------------------------

# A value other than the default for every field, and the options that ask for it.
OTHER_VALUES = {
    "arch": ("vgg16", ["--arch", "vgg16"]), "data": (Path("d"), ["--data", "d"]),
    "extra_train": ((Path("a"), Path("b")), ["--extra-train", "a", "--extra-train", "b"]),
    "extra_weight": (0.3, ["--extra-weight", "0.3"]), "image_size": (64, ["--image-size", "64"]),
    "augment": ("flip,hue,downscale", ["--augment", "downscale,flip,hue"]),
    "out": (Path("m"), ["--out", "m"]), "reports": (Path("r"), ["--reports", "r"]),
    "epochs": (3, ["--epochs", "3"]), "batch_size": (8, ["--batch-size", "8"]),
    "learning_rate": (0.01, ["--learning-rate", "0.01"]), "patience": (2, ["--patience", "2"]),
    "class_weights": (False, ["--no-class-weights"]), "seed": (7, ["--seed", "7"]),
    "subset": (0.5, ["--subset", "0.5"]), "precision": ("bf16", ["--precision", "bf16"]),
    "distribute": (True, ["--distribute"]), "weights": (None, ["--weights", "none"]),
    "recipe": ("full", ["--recipe", "full"]), "fine_tune_epochs": (2, ["--fine-tune-epochs", "2"]),
    "fine_tune_learning_rate": (1e-4, ["--fine-tune-learning-rate", "1e-4"]),
    "fine_tune_from": ("block3", ["--fine-tune-from", "block3"]),
}


def test_the_command_line_has_one_option_per_config_field(capsys):
    names = [field.name for field in dataclasses.fields(TrainConfig)]
    assert sorted(names) == sorted(OTHER_VALUES), "a new field needs its row in OTHER_VALUES"
    assert parse_config([]) == TrainConfig()  # every default comes from the dataclass
    for name in names:
        value, args = OTHER_VALUES[name]
        assert getattr(TrainConfig(), name) != value, name
        assert parse_config(args) == TrainConfig(**{name: value}), name
    parser_options = {option for action in build_parser()._actions for option in action.option_strings}
    flags = {"--" + name.replace("_", "-") for name in names}
    assert parser_options - {"-h", "--help"} == flags | {"--no-class-weights", "--no-distribute"}
    with pytest.raises(SystemExit):
        parse_config(["--help"])
    help_text = capsys.readouterr().out
    assert all(flag in help_text for flag in flags)


@pytest.mark.parametrize("args, words", [
    (["--epochs", "0"], "argument --epochs: '0' must be a number at least 1"),
    (["--batch-size", "many"], "argument --batch-size: 'many' is not a number"),
    (["--subset", "1.5"], "argument --subset: '1.5'"),
    (["--learning-rate", "nan"], "argument --learning-rate: 'nan'"),
    (["--seed", "-1"], "argument --seed: '-1'"),
    (["--arch", "resnet"], "argument --arch: invalid choice: 'resnet'"),
    (["--recipe", "fast"], "argument --recipe: invalid choice: 'fast'"),
    (["--fine-tune-from", "block9"], "argument --fine-tune-from: invalid choice: 'block9'"),
    (["--model", "scratch"], "--model names a model file; choose the network to train with --arch "
                             "compact|scratch|vgg16"),
    (["--model=models/scratch.keras"], "--arch compact|scratch|vgg16"),
    (["--augment", "flip,sepia"], "argument --augment: unknown augmentation sepia"),
    (["--image-size", "16"], "argument --image-size: '16' must be a number at least 32"),
    (["--extra-weight", "0"], "argument --extra-weight: '0'"),
])
def test_bad_options_are_one_error_line_and_exit_2(args, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--out", str(tmp_path / "models")])
    assert exit_.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and words in errors[0], errors
    assert not (tmp_path / "models").exists()


def test_a_config_checks_its_values_however_it_is_made(sample_crops, tmp_path):
    for bad, words in [({"epochs": 0}, "epochs: '0' must be"), ({"arch": "resnet"}, "arch: 'resnet' is not one"),
                       ({"fine_tune_from": "block9"}, "fine_tune_from: 'block9'"), ({"subset": 0}, "subset"),
                       ({"distribute": "yes"}, "distribute: must be True or False"),
                       ({"extra_train": "crops"}, "extra_train: must be a list")]:
        with pytest.raises(ValueError, match=words):
            TrainConfig(**bad)
    # Strings from the notebook or a sidecar become what the command line would give.
    config = TrainConfig(data=str(sample_crops), extra_train=[str(sample_crops / "valid")], weights="none")
    assert config.data == sample_crops and config.extra_train == (sample_crops / "valid",) and config.weights is None
    assert TrainConfig(**config.to_json()) == config
    # A config for the other network is refused before anything is built or written.
    with pytest.raises(ValueError, match="config's arch is vgg16"):
        train_scratch(TrainConfig(arch="vgg16", data=sample_crops, out=tmp_path / "models"))
    assert not (tmp_path / "models").exists()


def test_unset_epochs_block_size_and_augmentations_are_the_arch_and_recipe_defaults():
    scratch = TrainConfig(arch="scratch").resolved()
    assert (scratch.epochs, scratch.image_size, scratch.augment) == (30, 224, "flip,rotation,shift")
    compact = TrainConfig(arch="compact").resolved()
    assert (compact.epochs, compact.image_size, compact.augment) == (60, 96, "flip,rotation,shift,jpeg")
    assert TrainConfig().arch == "compact"  # the default network, chosen on the cross-validation folds
    vgg16 = TrainConfig(arch="vgg16").resolved()
    assert (vgg16.epochs, vgg16.fine_tune_epochs, vgg16.fine_tune_from) == (10, 10, "block5")
    assert TrainConfig(arch="vgg16", recipe="full").resolved().fine_tune_from == "all"
    explicit = TrainConfig(arch="vgg16", epochs=4, fine_tune_epochs=2, fine_tune_from="block4", image_size=64,
                           augment="none")
    assert explicit.resolved() == explicit and explicit.augmentations == ()


def test_the_recipe_is_chosen_on_the_command_line_never_by_the_hardware(monkeypatch):
    import tensorflow as tf

    on_this_machine = parse_config(["--arch", "vgg16"]).resolved()
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["/physical_device:GPU:0"])
    assert parse_config(["--arch", "vgg16"]).resolved() == on_this_machine  # as if a GPU were present
    assert on_this_machine.recipe == "cached-features"
    assert parse_config(["--arch", "vgg16", "--recipe", "full"]).recipe == "full"


# --- VGG16's two recipes ---------------------------------------------------------------------------


@pytest.fixture
def feature_runs(monkeypatch) -> list[int]:
    """How many times the frozen base was run once over a split (only the cached-features recipe does)."""
    runs: list[int] = []
    real = facemask.training.compute_features

    def counting(extractor, dataset):
        runs.append(1)
        return real(extractor, dataset)

    monkeypatch.setattr(facemask.training, "compute_features", counting)
    return runs


def tiny_vgg16(sample_crops, out, recipe: str) -> TrainConfig:
    return TrainConfig(arch="vgg16", data=sample_crops, out=out, weights=None, epochs=1, fine_tune_epochs=1,
                       batch_size=4, subset=0.06, recipe=recipe)


@pytest.mark.slow
def test_vgg16_cached_features_recipe_trains_the_head_then_block5(sample_crops, tmp_path, feature_runs):
    model, history = train_vgg16(tiny_vgg16(sample_crops, tmp_path, "cached-features"), verbose=0)
    assert len(feature_runs) == 2  # phase 1 on features of the train and valid splits, computed once
    assert history["phase"] == [1, 2] and len(history["val_loss"]) == 2
    # Phase 2 left only block5 of the base open (plus the head), the rest frozen.
    for layer in vgg16_base(model).layers:
        if layer.weights:
            assert layer.trainable == layer.name.startswith("block5"), layer.name
    # block5: three 3x3 512-to-512 convolutions; the head: 25088x256 + 256x2 dense layers.
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 7_079_424 + 6_423_298
    loaded, _ = load_model(tmp_path / "vgg16.keras")
    assert loaded.count_params() == 21_137_986
    assert json.loads((tmp_path / "vgg16_history.json").read_text())["phase"] == [1, 2]
    recorded = read_sidecar(tmp_path / "vgg16.json")["training"]["config"]
    assert (recorded["arch"], recorded["recipe"], recorded["fine_tune_from"]) == ("vgg16", "cached-features", "block5")


@pytest.mark.slow
def test_vgg16_full_recipe_unfreezes_the_whole_base(sample_crops, tmp_path, feature_runs):
    # The full (GPU) recipe at a small image size: both phases on images, all of the base open in phase 2.
    config = dataclasses.replace(tiny_vgg16(sample_crops, tmp_path, "full"), image_size=64)
    model, history = train_vgg16(config, verbose=0)
    assert feature_runs == [] and history["phase"] == [1, 2]
    assert all(layer.trainable for layer in vgg16_base(model).layers)
    recorded = read_sidecar(tmp_path / "vgg16.json")
    assert (recorded["training"]["config"]["recipe"], recorded["training"]["config"]["fine_tune_from"]) == (
        "full", "all")
    assert recorded["image_size"] == (64, 64)


@pytest.mark.slow
# Keras reads the learning rate, a MirroredVariable here, with np.array(), and TensorFlow's
# distributed variables do not yet take NumPy 2's `copy` keyword: harmless, upstream's to fix.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_distribute_builds_and_compiles_under_a_mirrored_strategy(sample_crops, tmp_path, monkeypatch, capsys):
    import tensorflow as tf

    seen = {}
    real_compile = facemask.training.compile_model

    def recording_compile(model, learning_rate):
        seen["strategy"], seen["model"] = tf.distribute.get_strategy(), model
        return real_compile(model, learning_rate)

    monkeypatch.setattr(facemask.training, "compile_model", recording_compile)
    code = main(["--arch", "scratch", "--data", str(sample_crops), "--epochs", "1", "--batch-size", "16",
                 "--subset", "0.3", "--distribute", "--out", str(tmp_path / "models"),
                 "--reports", str(tmp_path / "reports")])
    assert code == 0
    # On a machine without GPUs MirroredStrategy has one replica, the CPU; the model was built and
    # compiled in its scope, so Keras trained it under that strategy.
    strategy = seen["strategy"]
    assert isinstance(strategy, tf.distribute.MirroredStrategy) and strategy.num_replicas_in_sync == 1
    assert seen["model"].distribute_strategy is strategy
    assert "MirroredStrategy: 1 replica(s)" in capsys.readouterr().err
    loaded, _ = load_model(tmp_path / "models" / "scratch.keras")
    assert loaded.count_params() == seen["model"].count_params()
    assert json.loads((tmp_path / "reports" / "scratch_metrics.json").read_text())["count"] > 0


def test_distribute_is_off_by_default_and_documented(capsys):
    assert parse_config(["--arch", "scratch"]).distribute is False
    assert parse_config(["--arch", "scratch", "--distribute"]).distribute is True
    with pytest.raises(SystemExit):
        parse_config(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--distribute" in help_text and "MirroredStrategy across all GPUs" in help_text
    assert "MultiWorkerMirroredStrategy" in help_text and "MultiWorkerMirroredStrategy" in facemask.train.__doc__
