"""Shared fixtures: the real sample (committed), the generated sample (hand-made pixels) and the
real data folder (optional)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # split.py is a top-level script, imported by its tests
SHARED = ROOT.parent / "shared" / "datasets"
REAL_SAMPLE = ROOT / "sample"  # 60 CC0 photos of the Kaggle set, committed (scripts/make_sample.py)

requires_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"real data folder {SHARED} is absent (it is not part of a fresh clone)"
)


@pytest.fixture(scope="session")
def astronaut():
    """A real public-domain face that ships with scikit-image (512x512 RGB), as a PIL image."""
    from PIL import Image
    from skimage import data as skimage_data

    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(scope="session")
def real_sample_dir() -> Path:
    """The real photos committed in sample/ (images/ and train.csv): the default data of the tests."""
    assert (REAL_SAMPLE / "train.csv").is_file(), f"{REAL_SAMPLE} is part of the repository"
    return REAL_SAMPLE


@pytest.fixture(scope="session")
def real_sample_crops(real_sample_dir, tmp_path_factory) -> Path:
    """The real sample cropped by split.py into train/valid/test x mask/no-mask (70/15/15)."""
    import split

    out = tmp_path_factory.mktemp("real-crops") / "data"
    code = split.main([str(real_sample_dir / "images"), str(real_sample_dir / "train.csv"), "70", "15", "15",
                       "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The generated sample in the Kaggle layout (images/ and train.csv), for tests that need
    hand-made pixels: cartoon faces whose classes a few epochs of training tell apart."""
    from facemask.sample import make_sample

    out = tmp_path_factory.mktemp("sample")
    make_sample(out, photos=40, seed=0)
    return out


@pytest.fixture(scope="session")
def sample_crops(sample_dir, tmp_path_factory) -> Path:
    """The generated sample cropped by split.py into train/valid/test x mask/no-mask (70/15/15)."""
    import split

    out = tmp_path_factory.mktemp("crops") / "data"
    code = split.main([str(sample_dir / "images"), str(sample_dir / "train.csv"), "70", "15", "15", "--out", str(out)])
    assert code == 0
    return out
