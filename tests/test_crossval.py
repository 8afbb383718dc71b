"""bench/crossval.py on the generated sample with 2 folds: folds grouped by photo, validation first, test at the end."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import ROOT


def crossval(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, str(ROOT / "bench" / "crossval.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=900)


@pytest.mark.slow
def test_crossval_folds_are_grouped_by_photo_and_test_parts_wait_for_the_final_report(sample_dir, tmp_path):
    work = tmp_path / "cv"
    common = ["compact-64", "--work", str(work), "--images", str(sample_dir / "images"), "--csv",
              str(sample_dir / "train.csv"), "--folds", "2", "--with", "epochs=1", "--with", "batch_size=16"]
    screening = crossval(*common)
    assert screening.returncode == 0, screening.stderr[-3000:]
    assert "VALIDATION parts" in screening.stdout and "TEST parts" not in screening.stdout

    # Every photo in exactly one part of each fold; the two test parts share no photo and cover them all.
    tested = []
    for fold in sorted((work / "folds-2").iterdir()):
        parts = defaultdict(set)
        with open(fold / "manifest.csv", newline="") as f:
            for row in csv.DictReader(f):
                parts[row["source"]].add(row["split"])
                assert (fold / row["path"]).resolve() == (work / "crops" / "train" / row["label"] /
                                                          Path(row["path"]).name).resolve()
        assert all(len(where) == 1 for where in parts.values()), parts
        assert {part for where in parts.values() for part in where} == {"train", "valid", "test"}
        tested.append({photo for photo, where in parts.items() if where == {"test"}})
    assert not tested[0] & tested[1] and len(tested[0] | tested[1]) == 40

    results = [json.loads((work / "runs" / "compact-64" / f"fold{i}" / "result.json").read_text()) for i in range(2)]
    assert all("valid" in r and "test" not in r for r in results)  # screening never looks at the test parts
    assert {r["config"]["image_size"] for r in results} == {64} and all(r["epochs"] == 1 for r in results)
    summary = json.loads((work / "summary.json").read_text())
    entry = summary["valid"]["at_0.5"]["compact-64"]
    assert entry["folds"] == 2 and 0 <= entry["accuracy"][0] <= 1
    assert set(entry) >= {"mask_recall", "no_mask_recall", "accuracy_16_up", "accuracy under 16"}

    final = crossval(*common, "--final")
    assert final.returncode == 0, final.stderr[-3000:]
    assert "TEST parts (the final report: never used to choose)" in final.stdout
    again = [json.loads((work / "runs" / "compact-64" / f"fold{i}" / "result.json").read_text()) for i in range(2)]
    assert [r["minutes"] for r in again] == [r["minutes"] for r in results]  # the trained models were reused
    with open(work / "crops" / "manifest.csv", newline="") as f:
        faces = sum(1 for _ in csv.DictReader(f))
    assert sum(r["test"]["at_threshold"]["count"] for r in again) == faces  # every face of the sample, once
    assert "test" in json.loads((work / "summary-final.json").read_text())
