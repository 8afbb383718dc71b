"""The notebook runs top to bottom on the generated sample, with tiny parameters (papermill)."""

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
def test_notebook_runs_end_to_end(sample_crops, tmp_path):
    papermill = pytest.importorskip("papermill")
    executed = tmp_path / "executed.ipynb"
    parameters = {
        "DATA_DIR": str(sample_crops), "MODELS_DIR": str(tmp_path / "models"), "REPORTS_DIR": str(tmp_path / "reports"),
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
    assert "no-mask recall" in outputs
    assert outputs.count("same predictions after loading: True") == 2
