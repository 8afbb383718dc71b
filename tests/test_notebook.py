"""The notebook runs top to bottom on the committed real sample, with tiny parameters (papermill)."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

NOTEBOOK = ROOT / "face_mask_detection_cnn.ipynb"


def test_notebook_is_committed_clean():
    notebook = json.loads(NOTEBOOK.read_text())
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code_cells and all(not cell["outputs"] and cell["execution_count"] is None for cell in code_cells)
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert any("parameters" in cell["metadata"].get("tags", []) for cell in code_cells)


# What a user's notebook run must never show: TensorFlow's start-up lines (absl's notice, its C++ log
# lines, the cuInit error of a machine without an NVIDIA driver) and tf.function's retracing warnings.
NOISE = re.compile(r"absl::InitializeLog|^[IWEF]\d{4} \d\d:\d\d|cuInit|cuda_|cpu_feature_guard|retracing", re.M)
# Examples, an augmented batch, each augmentation alone; the history and the confusion matrix of each of the three
# networks; inference.
PLOTTED_CELLS = 10


def git_clone(source: str, target: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", source, str(target)], check=True, capture_output=True, timeout=300)
    return target


@pytest.fixture
def clone(tmp_path) -> Path:
    """A fresh clone of this repository's committed HEAD, as a user gets it (uncommitted changes are not in it)."""
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip(f"{ROOT} is not a git repository")
    return git_clone(str(ROOT), tmp_path / "clone")


def user_environment(tmp_path: Path, **more: str) -> dict[str, str]:
    """The test's environment without what conftest sets for itself (TF_CPP_MIN_LOG_LEVEL) or that would
    choose for the kernel (MPLBACKEND, PYTHONPATH); a fresh IPYTHONDIR, so IPython runs with its stock
    configuration, and an empty kagglehub cache, so PHOTOS = "auto" finds no Kaggle download here."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("TF_CPP_MIN_LOG_LEVEL", "MPLBACKEND", "PYTHONPATH", "JUPYTER_PATH")}
    (tmp_path / "ipython").mkdir(exist_ok=True)
    return env | {"IPYTHONDIR": str(tmp_path / "ipython"), "KAGGLEHUB_CACHE": str(tmp_path / "kagglehub"),
                  "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data")} | more


def papermill(notebook: Path, executed: Path, cwd: Path, env: dict[str, str], kernel: str = "python3",
              **parameters: object) -> subprocess.CompletedProcess:
    """`papermill NOTEBOOK EXECUTED -p NAME VALUE ...` in its own process, the kernel started in `cwd`."""
    pytest.importorskip("papermill")
    args = [arg for name, value in parameters.items() for arg in ("-p", name, str(value))]
    return subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(executed), *args, "-k", kernel,
                           "--cwd", str(cwd), "--no-progress-bar"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=3600)


def executed_cells(executed: Path) -> list[dict]:
    return [cell for cell in json.loads(executed.read_text())["cells"] if cell["cell_type"] == "code"]


def cell_text(cell: dict) -> str:
    """Everything a cell printed or showed as text (streams, plain-text results, error messages)."""
    parts = []
    for output in cell["outputs"]:
        parts.append("".join(output.get("text", "")))
        parts.append("".join(output.get("data", {}).get("text/plain", "")))
        parts.append("".join(output.get("data", {}).get("text/html", "")))
        parts.append(output.get("evalue", ""))
    return "".join(parts)


def check_figures_and_quiet(cells: list[dict]) -> str:
    """Every cell that plots shows its figure as an image, no output holds TensorFlow's noise; all the text."""
    plotting = [cell for cell in cells if re.search(r"\bplot_\w+\(", "".join(cell["source"]))]
    assert len(plotting) == PLOTTED_CELLS
    for cell in plotting:
        images = [output for output in cell["outputs"] if "image/png" in output.get("data", {})]
        assert images, f"no image shown by: {''.join(cell['source'])[:200]}"
    text = "".join(cell_text(cell) for cell in cells)
    noise = NOISE.search(text)
    assert noise is None, text[max(0, noise.start() - 300): noise.end() + 300]
    return text


@pytest.mark.slow
def test_a_fresh_clone_runs_the_notebook_as_a_user_would(clone, tmp_path):
    """Stock Jupyter, from the clone's root, only the quick-run parameters set: nothing else prepared."""
    executed = tmp_path / "executed.ipynb"
    result = papermill(clone / NOTEBOOK.name, executed, clone, user_environment(tmp_path),
                       EPOCHS=1, FINE_TUNE_EPOCHS=1, WEIGHTS=None)
    assert result.returncode == 0, result.stderr[-5000:]
    cells = executed_cells(executed)
    assert all(cell["execution_count"] is not None for cell in cells)
    assert not [output for cell in cells for output in cell["outputs"] if output["output_type"] == "error"]
    text = check_figures_and_quiet(cells)
    # The clone holds no crops, so the data cell cuts the committed sample into ./data and says so.
    assert "no crops yet (data folder not found: data): cutting the embedded real sample" in text
    assert "using the crops just cut into data" in text and (clone / "data" / "manifest.csv").is_file()
    for name in ("compact", "scratch", "vgg16"):
        assert (clone / "models" / f"{name}.keras").is_file()
        metrics = json.loads((clone / "reports" / f"{name}_metrics.json").read_text())
        assert metrics["count"] > 0 and 0 <= metrics["accuracy"] <= 1
        # Each model is scored at the threshold its training chose on validation and saved in its sidecar.
        sidecar = json.loads((clone / "models" / f"{name}.json").read_text())
        assert metrics["threshold"] == sidecar["no_mask_threshold"]
        assert set(metrics["by_size"]) == {"under 16", "16-31", "32-63", "64 and more"}  # from data/manifest.csv
    # The default network's section: its cost beside the scratch CNN's, its faces by size, its predictions labelled.
    assert "multiply-adds per face" in text and "by face size" in text
    assert re.search(r"compact CNN, labelled at its threshold: no-mask when P\(no-mask\) >= 0\.\d+", text)
    # Random VGG16 weights are called what they are: in its first output, its report and the table.
    vgg16_cells = [cell_text(cell) for cell in cells if "vgg16_label" in "".join(cell["source"])]
    assert len(vgg16_cells) == 3 and all("random weights: not a result" in cell for cell in vgg16_cells)
    assert "no-mask recall" in text and "trainable in the base now: block5_conv1, block5_conv2, block5_conv3" in text
    assert text.count("same predictions after loading: True") == 3
    assert "'recipe': 'cached-features'" in text  # the sidecar's record of how VGG16 was trained


# Run by IPython at the start of the Colab stand-in's kernel (its startup folder).
COLAB_STARTUP = """
import sys
import types

sys.modules["google.colab"] = types.ModuleType("google.colab")  # what the set-up cell looks for
# Colab imports packages before any cell runs. This one is older than the project needs, so pip
# replaces it under the running session, and the set-up cell must say that a restart is needed.
import tqdm
"""


def colab_notebook(source: Path, repo_url: str, project_dir: Path) -> str:
    """The notebook with its set-up cell's two settings changed, as a user edits REPO_URL in Colab."""
    notebook = json.loads(source.read_text())
    setup = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    text = "".join(setup["source"])
    for name, value in (("REPO_URL", repo_url), ("PROJECT_DIR", str(project_dir))):
        text, count = re.subn(rf"^{name} = .*$", f"{name} = {json.dumps(value)}", text, count=1, flags=re.M)
        assert count == 1, name
    setup["source"] = text.splitlines(keepends=True)
    return json.dumps(notebook)


@pytest.mark.slow
def test_the_notebook_sets_itself_up_in_a_simulated_colab(clone, tmp_path):
    """A kernel in a fresh venv that holds only ipykernel (and an old tqdm, loaded at start as Colab loads
    its packages), google.colab importable, an empty working folder: the set-up cell clones the project
    from REPO_URL, pip-installs it and asks for a restart; after it (a new kernel), every cell runs."""
    venv, jupyter = tmp_path / "venv", tmp_path / "jupyter"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
        python = str(venv / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "--quiet", "ipykernel", "tqdm==4.65.0"], check=True,
                       capture_output=True, timeout=1800)
        subprocess.run([python, "-m", "ipykernel", "install", "--prefix", str(jupyter), "--name", "colab-sim"],
                       check=True, capture_output=True, timeout=600)
        startup = tmp_path / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-colab.py").write_text(COLAB_STARTUP)
        content = tmp_path / "content"  # Colab's working folder, empty
        content.mkdir()
        project = content / "face-mask-detection"
        notebook = tmp_path / "colab.ipynb"
        notebook.write_text(colab_notebook(clone / NOTEBOOK.name, clone.as_uri(), project))
        env = user_environment(tmp_path, JUPYTER_PATH=str(jupyter / "share" / "jupyter"))
        quick = {"EPOCHS": 1, "FINE_TUNE_EPOCHS": 1, "WEIGHTS": None, "SUBSET": 0.3}

        first = papermill(notebook, tmp_path / "first.ipynb", content, env, kernel="colab-sim", **quick)
        assert first.returncode != 0, "pip replaced the loaded tqdm: the set-up cell must stop the run"
        setup, *rest = executed_cells(tmp_path / "first.ipynb")
        text = cell_text(setup)
        assert "Successfully installed" in text and "face-mask-detection-0.1.0" in text, text[-3000:]
        assert "Restart needed: pip replaced packages this session had already loaded (tqdm 4.65.0 -> " in text
        assert (project / ".git").is_dir() and all(cell["execution_count"] is None for cell in rest)

        # The restart: a new kernel in the same runtime. The project is there, pip replaces nothing loaded.
        second = papermill(notebook, tmp_path / "second.ipynb", content, env, kernel="colab-sim", **quick)
        assert second.returncode == 0, second.stderr[-5000:]
        cells = executed_cells(tmp_path / "second.ipynb")
        assert "No restart needed: pip replaced nothing this session had loaded." in cell_text(cells[0])
        assert all(cell["execution_count"] is not None for cell in cells)
        text = check_figures_and_quiet(cells)
        assert "cutting the embedded real sample" in text and text.count("same predictions after loading: True") == 3
        assert (project / "models" / "vgg16.keras").is_file()
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # about 3 GB once the project is installed


def code_cells() -> list[str]:
    notebook = json.loads(NOTEBOOK.read_text())
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_first_cell_sets_up_colab_only_from_a_url_the_user_sets():
    first = code_cells()[0]
    assert 'if "google.colab" in sys.modules:' in first
    assert "REPO_URL = " in first and "marabian" not in first  # the original project is not this code
    assert 'run_line_magic("pip", \'install ".[kaggle]"\')' in first and '"git", "clone"' in first


# TrainConfig fields the parameters cell leaves out, and why.
NOT_PARAMETERS = {"arch": "the notebook trains all three networks, one config each"}
# The notebook's own parameters (which photos to cut), not training settings, at their defaults.
NOTEBOOK_ONLY = {"PHOTOS": "auto", "KAGGLE_DIR": None, "DOWNLOAD_KAGGLE": False}


def parameters_cell() -> dict:
    """The names and values of the cell tagged "parameters", read without running the notebook."""
    notebook = json.loads(NOTEBOOK.read_text())
    (cell,) = [cell for cell in notebook["cells"] if "parameters" in cell["metadata"].get("tags", [])]
    values = {}
    for node in ast.parse("".join(cell["source"])).body:
        # Plain `NAME = literal` lines only: what papermill overrides and what a reader can change.
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.unparse(node)
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def test_parameters_mirror_the_training_configs_defaults():
    """Every TrainConfig field (but `arch`) is a parameter, its name in capitals, at the dataclass default:
    no quick-run values here (the papermill test passes its own), so the notebook trains what
    `python -m facemask.train` trains."""
    from facemask.config import TrainConfig, config_from_parameters

    values = parameters_cell()
    fields = [field.name for field in dataclasses.fields(TrainConfig) if field.name not in NOT_PARAMETERS]
    missing = {name.upper() for name in fields} - set(values)
    assert not missing, f"TrainConfig fields missing from the parameters cell: {sorted(missing)}"
    assert set(values) == {name.upper() for name in fields} | set(NOTEBOOK_ONLY), "parameters that are neither"
    defaults = TrainConfig().to_json()  # JSON values: paths as strings, tuples as lists, as the cell writes them
    drifted = {name.upper(): (values[name.upper()], defaults[name]) for name in fields
               if values[name.upper()] != defaults[name] or type(values[name.upper()]) is not type(defaults[name])}
    assert not drifted, f"parameters that differ from TrainConfig's defaults (notebook, dataclass): {drifted}"
    assert {name: values[name] for name in NOTEBOOK_ONLY} == NOTEBOOK_ONLY
    assert config_from_parameters(values) == TrainConfig()  # what the notebook builds from them


def notebook_text(kind: str) -> str:
    """The notebook's markdown or code, every cell's lines joined by single spaces."""
    notebook = json.loads(NOTEBOOK.read_text())
    cells = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == kind]
    return " ".join(" ".join(cell.split()) for cell in cells)


def test_the_numbers_the_text_quotes_are_the_codes():
    """Numbers the notebook's sentences take from TrainConfig and the training callbacks, checked so that
    a changed default cannot leave the story behind."""
    from facemask.config import DEFAULT_EPOCHS, DEFAULT_IMAGE_SIZE, RECIPE_FINE_TUNE_FROM, TrainConfig
    from facemask.training import LR_DROP, lr_patience

    defaults, text, code = TrainConfig(), notebook_text("markdown"), notebook_text("code")
    stopping = re.findall(r"for at most (\d+) epochs \(`EPOCHS = None`\)\. When the validation loss has not improved "
                          r"for (\d+) epochs \(half of `PATIENCE`, (\d+)\) the learning rate drops (\d+)-fold, and "
                          r"after (\d+) training stops", text)
    assert len(stopping) == 2, "the compact and scratch CNNs' paragraphs on epochs, patience and the learning-rate drop"
    for arch, numbers in zip(("compact", "scratch"), stopping, strict=True):
        assert [int(number) for number in numbers] == [
            DEFAULT_EPOCHS[arch], lr_patience(defaults.patience), defaults.patience, LR_DROP, defaults.patience], arch
    assert re.search(r"for at most `EPOCHS` epochs \((\d+) by default\)", text)[1] == str(DEFAULT_EPOCHS["vgg16"])
    assert float(re.search(r"\(`FINE_TUNE_LEARNING_RATE`, ([0-9e.-]+)\)", text)[1]) == defaults.fine_tune_learning_rate
    assert (f"`{RECIPE_FINE_TUNE_FROM['cached-features']}` for `\"cached-features\"`, all of it for `\"full\"`" in text
            and RECIPE_FINE_TUNE_FROM["full"] == "all")
    # The parameters cell's comments.
    assert f"the learning rate drops {LR_DROP}x after half of it" in code and lr_patience(10) == 10 // 2
    assert (f"{DEFAULT_EPOCHS['compact']} for the compact CNN, {DEFAULT_EPOCHS['scratch']} for the scratch CNN, "
            f"{DEFAULT_EPOCHS['vgg16']} for VGG16's phase 1") in code
    sizes = DEFAULT_IMAGE_SIZE
    assert f"{sizes['compact']} for the compact CNN, {sizes['scratch']} for the others" in code
    assert sizes["scratch"] == sizes["vgg16"]
    # Gone for good: a download command the README no longer has, and a resize other than training's.
    assert "kaggle datasets download" not in text + code and ".resize(" not in code


def test_the_networks_numbers_the_text_quotes_are_the_models():
    """The compact CNN's section quotes its input size and weights and the scratch CNN's dense layer: built here."""
    from facemask.config import DEFAULT_IMAGE_SIZE
    from facemask.models import build_compact, build_scratch_cnn

    text = notebook_text("markdown")
    side = DEFAULT_IMAGE_SIZE["compact"]
    compact, scratch = build_compact((side, side)), build_scratch_cnn()
    assert f"{side}x{side} input" in text and f"{compact.count_params() / 1e6:.2f} M weights in all" in text
    dense = scratch.get_layer("dense").count_params() / scratch.count_params()
    assert f"puts {dense:.1%} of its {scratch.count_params() / 1e6:.1f} M weights in one dense layer" in text
    flattened = scratch.get_layer("flatten").output.shape[1:]
    assert f"the 28 x 28 x 64 = {flattened[0]:,} features it flattens" in text and flattened[0] == 28 * 28 * 64


def test_the_quiet_import_drops_only_the_retracing_warning_about_keras_own_steps():
    """The notebook's import cell keeps TensorFlow's "excessive retracing" warning out when it counts the
    traces of Keras' train, test and predict steps (one code object for every model), not otherwise."""
    import logging

    from facemask.tf_startup import KerasStepsRetracing, import_tensorflow_quietly

    keras_step = ("5 out of the last 7 calls to <function TensorFlowTrainer._make_function.<locals>.multi_step_on_"
                  "iterator at 0x7fc046f1fa60> triggered tf.function retracing. Tracing is expensive")
    own = "5 out of the last 5 calls to <function augment at 0x7fc046f1fa60> triggered tf.function retracing."
    logger, seen = logging.getLogger("tensorflow"), []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(handler)
    try:
        import_tensorflow_quietly()
        import_tensorflow_quietly()  # twice, one filter
        assert sum(isinstance(f, KerasStepsRetracing) for f in logger.filters) == 1
        for message in (keras_step, own, "an ordinary warning"):
            logger.warning(message)
        assert seen == [own, "an ordinary warning"]
    finally:
        logger.removeHandler(handler)
        for f in [f for f in logger.filters if isinstance(f, KerasStepsRetracing)]:
            logger.removeFilter(f)
