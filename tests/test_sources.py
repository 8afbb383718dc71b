"""Which photos the notebook crops: the Kaggle download when present, else the committed real sample."""

from __future__ import annotations

import shutil

import pytest
from conftest import REAL_SAMPLE, SHARED, requires_shared

from facemask.sources import KAGGLE_DATASET, KAGGLE_RATIOS, SAMPLE_RATIOS, find_photos, kaggle_layout, kagglehub_cache

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
