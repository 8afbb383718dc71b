"""The notebook runs top to bottom on the committed real sample, with tiny parameters (papermill)."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

NOTEBOOK = ROOT / "face_mask_detection_cnn.ipynb"


def test_notebook_is_committed_clean():
    notebook = json.loads(NOTEBOOK.read_text())
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code_cells and all(not cell["outputs"] and cell["execution_count"] is None for cell in code_cells)
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert any("parameters" in cell["metadata"].get("tags", []) for cell in code_cells)


@pytest.mark.slow
def test_notebook_runs_end_to_end(tmp_path):
    papermill = pytest.importorskip("papermill")
    executed = tmp_path / "executed.ipynb"
    # DATA_DIR does not exist yet, so the notebook cuts the photos itself; "sample" rather than
    # "auto" so that a Kaggle download in this machine's kagglehub cache cannot make the test long.
    parameters = {
        "DATA_DIR": str(tmp_path / "data"), "PHOTOS": "sample",
        "MODELS_DIR": str(tmp_path / "models"), "REPORTS_DIR": str(tmp_path / "reports"),
        "EPOCHS": 1, "VGG16_EPOCHS": 1, "FINE_TUNE_EPOCHS": 1, "BATCH_SIZE": 8, "VGG16_WEIGHTS": None,
        "SUBSET": 0.3, "SEED": 0,
    }
    papermill.execute_notebook(str(NOTEBOOK), str(executed), parameters=parameters, cwd=str(ROOT),
                               kernel_name="python3", progress_bar=False)
    for name in ("scratch", "vgg16"):
        assert (tmp_path / "models" / f"{name}.keras").is_file()
        metrics = json.loads((tmp_path / "reports" / f"{name}_metrics.json").read_text())
        assert metrics["count"] > 0 and 0 <= metrics["accuracy"] <= 1
    outputs = "".join(
        "".join(output.get("text", "")) + json.dumps(output.get("data", {}))
        for cell in json.loads(executed.read_text())["cells"] if cell["cell_type"] == "code"
        for output in cell["outputs"]
    )
    assert "using the embedded real sample" in outputs
    assert (tmp_path / "data" / "manifest.csv").is_file()
    assert "no-mask recall" in outputs
    assert outputs.count("same predictions after loading: True") == 2


def code_cells() -> list[str]:
    notebook = json.loads(NOTEBOOK.read_text())
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_first_cell_sets_up_colab_only_from_a_url_the_user_sets():
    first = code_cells()[0]
    assert 'if "google.colab" in sys.modules:' in first
    assert "REPO_URL = " in first and "marabian" not in first  # the original project is not this code
    assert '"pip", "install"' in first and '"git", "clone"' in first


def test_parameters_default_to_the_command_lines_defaults():
    import ast

    from facemask.train import DEFAULT_EPOCHS, parse_args

    (cell,) = [source for source in code_cells() if source.startswith('DATA_DIR = "data"')]
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell).body}
    cli = parse_args(["--model", "scratch"])
    assert values["EPOCHS"] == DEFAULT_EPOCHS["scratch"] and values["VGG16_EPOCHS"] == DEFAULT_EPOCHS["vgg16"]
    assert values["FINE_TUNE_EPOCHS"] is cli.fine_tune_epochs is None  # phase 2: as many epochs as phase 1
    assert (values["BATCH_SIZE"], values["SEED"], values["PRECISION"], values["SUBSET"], values["FINE_TUNE_FROM"]) == (
        cli.batch_size, cli.seed, cli.precision, cli.subset, cli.fine_tune_from)
    assert (values["DATA_DIR"], values["MODELS_DIR"], values["REPORTS_DIR"]) == (
        str(cli.data), str(cli.out), str(cli.reports))
    assert values["VGG16_WEIGHTS"] == parse_args(["--model", "vgg16"]).weights == "imagenet"
    assert values["PHOTOS"] == "auto" and values["DOWNLOAD_KAGGLE"] is False
