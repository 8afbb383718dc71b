"""Which photos the notebook crops: the Kaggle download when present, else the committed real sample; and
its data step, which uses complete crops as they are and cuts the photos otherwise."""

from __future__ import annotations

import shutil

import pytest
from conftest import REAL_SAMPLE, SHARED, requires_shared

from facemask.data import DataError, check_data_dir
from facemask.sources import (
    KAGGLE_DATASET,
    KAGGLE_RATIOS,
    SAMPLE_RATIOS,
    ensure_crops,
    find_photos,
    kaggle_layout,
    kagglehub_cache,
)

NESTED = "Medical mask/Medical mask/Medical Mask/images"  # where the wobot archive keeps its photos


def fake_kaggle(root, sample=REAL_SAMPLE):
    """The wobot download's shape: train.csv on top, the photos a few folders down (two photos suffice)."""
    images = root / NESTED
    images.mkdir(parents=True)
    shutil.copy(sample / "train.csv", root / "train.csv")
    names = sorted(path.name for path in (sample / "images").iterdir())[:2]
    first = (sample / "train.csv").read_text().splitlines()[1].split(",")[0]
    for name in {*names, first}:
        shutil.copy(sample / "images" / name, images / name)
    return root


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working folder with neither kaggle/ nor sample/, and an empty kagglehub cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_kaggle_layout_finds_nested_photos(tmp_path):
    photos = kaggle_layout(fake_kaggle(tmp_path / "download"))
    assert photos.kind == "kaggle" and photos.ratios == KAGGLE_RATIOS
    assert photos.csv == tmp_path / "download" / "train.csv" and photos.images == tmp_path / "download" / NESTED
    assert kaggle_layout(tmp_path / "absent") is None
    (tmp_path / "empty").mkdir()
    assert kaggle_layout(tmp_path / "empty") is None


@requires_shared
def test_kaggle_layout_reads_the_shared_kaggle_format_folder():
    photos = kaggle_layout(SHARED / "kaggle-format")
    assert photos.images == SHARED / "kaggle-format" / "images"


def test_auto_falls_back_on_the_committed_sample_from_any_folder(elsewhere):
    photos = find_photos()
    assert photos.kind == "sample" and photos.ratios == SAMPLE_RATIOS
    assert photos.csv.resolve() == (REAL_SAMPLE / "train.csv").resolve()
    assert "embedded real sample" in photos.describe()
    assert photos.split_args("out") == [str(photos.images), str(photos.csv), *SAMPLE_RATIOS, "--out", "out"]


def test_auto_prefers_kagglehubs_newest_download(elsewhere):
    versions = elsewhere / "cache" / "datasets" / KAGGLE_DATASET / "versions"
    fake_kaggle(versions / "3")
    fake_kaggle(versions / "12")
    assert kagglehub_cache() == versions / "12"
    photos = find_photos()
    assert photos.kind == "kaggle" and photos.csv == versions / "12" / "train.csv"
    assert find_photos("sample").kind == "sample"


def test_auto_takes_a_kaggle_folder_in_the_working_folder(elsewhere):
    fake_kaggle(elsewhere / "kaggle")
    assert find_photos().images.resolve() == (elsewhere / "kaggle" / NESTED).resolve()


def test_missing_photos_are_an_error_not_a_silent_fallback(elsewhere):
    with pytest.raises(FileNotFoundError, match="no Kaggle train.csv"):
        find_photos("kaggle")
    with pytest.raises(FileNotFoundError, match="typo"):
        find_photos("auto", kaggle_dir=elsewhere / "typo")
    with pytest.raises(FileNotFoundError, match="no sample"):
        find_photos("sample", sample_dir=elsewhere / "nothing")
    with pytest.raises(ValueError, match="which must be"):
        find_photos("cartoons")


def snapshot(folder) -> dict:
    """Every file under `folder` with its size and modification time: what a step that uses it must not touch."""
    return {path: (path.stat().st_size, path.stat().st_mtime_ns) for path in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("empty_folder", [False, True], ids=["no data folder", "an empty one"])
def test_the_data_step_cuts_the_sample_where_there_are_no_crops(elsewhere, empty_folder, capsys):
    """A fresh clone has no data/ (nothing of it is committed): the sample is cut, and the cell says so."""
    if empty_folder:
        (elsewhere / "data").mkdir()
    assert ensure_crops("data") == "using the crops just cut into data"
    said = capsys.readouterr().out
    reason = "split folder not found: data/train" if empty_folder else "data folder not found: data"
    assert said.startswith(f"no crops yet ({reason}") and "cutting the embedded real sample (CC0 photos)" in said
    check_data_dir(elsewhere / "data")  # what the training command checks
    assert (elsewhere / "data" / "manifest.csv").is_file()


def test_the_data_step_uses_complete_crops_as_they_are(real_sample_crops, capsys):
    before = snapshot(real_sample_crops)
    assert ensure_crops(real_sample_crops) == f"using the crops already in {real_sample_crops} (delete that " \
                                              "folder to cut them again)"
    assert snapshot(real_sample_crops) == before and capsys.readouterr().out == ""


@pytest.mark.parametrize("leftover", ["README.md", "train/mask/face.png"])
def test_the_data_step_leaves_a_folder_of_other_files_alone(elsewhere, leftover):
    """Files that are not a complete set of crops (a README, a half-made split) are neither used nor
    overwritten: the message says what is missing and what to do."""
    (elsewhere / "data" / leftover).parent.mkdir(parents=True)
    (elsewhere / "data" / leftover).write_bytes(b"not crops")
    before = snapshot(elsewhere / "data")
    with pytest.raises(DataError, match=r"data holds no complete set of crops \(.+\) but is not empty, so nothing "
                                        "is cut into it: empty or delete it, or set DATA to another folder"):
        ensure_crops("data")
    assert snapshot(elsewhere / "data") == before
