"""The real sample committed in sample/: small, credited, true to its source, and enough to split."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest
from conftest import REAL_SAMPLE, ROOT, SHARED, requires_shared

from facemask import CLASS_NAMES, SPLITS
from facemask.annotations import read_rows

HEADER = ["name", "x1", "x2", "y1", "y2", "classname"]
# The full set's share, mask / (mask + no-mask) faces: 1,144 / (1,144 + 234) in
# ../shared/datasets/kaggle-format, which a fresh clone does not have.
FULL_SET_MASK_SHARE = 1144 / (1144 + 234)


def rows_of(csv_path) -> list[tuple]:
    """(photo, class, box) of each row, read by the project's one reader; the header as the Kaggle set has it."""
    assert csv_path.read_text(encoding="utf-8").splitlines()[0] == ",".join(HEADER)
    return [(row.name, row.classname, row.xmin, row.ymin, row.xmax, row.ymax) for row in read_rows(csv_path)]


def load_pick_sample():
    """scripts/pick_sample.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("pick_sample", ROOT / "scripts" / "pick_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_is_small_and_every_row_has_its_photo():
    photos = {path.name: path.stat().st_size for path in (REAL_SAMPLE / "images").iterdir()}
    rows = rows_of(REAL_SAMPLE / "train.csv")
    assert set(photos) == {row[0] for row in rows}
    assert 50 <= len(photos) <= 70
    assert sum(photos.values()) <= 5_000_000
    assert max(photos.values()) < 300_000


def test_sample_holds_both_classes_at_the_full_sets_share():
    classes = Counter(row[1] for row in rows_of(REAL_SAMPLE / "train.csv"))
    mask, no_mask = classes["face_with_mask"], classes["face_no_mask"]
    assert no_mask >= 30
    assert abs(mask / (mask + no_mask) - FULL_SET_MASK_SHARE) <= 0.03


def test_sample_readme_credits_the_source_and_licence():
    readme = (REAL_SAMPLE / "README.md").read_text()
    assert '"Face Mask Detection" by andrewmvd on Kaggle' in readme
    assert "CC0" in readme and "scripts/pick_sample.py" in readme


def test_splitting_the_sample_puts_both_classes_in_every_split(real_sample_crops):
    for name in SPLITS:
        for label in CLASS_NAMES:
            assert any((real_sample_crops / name / label).iterdir()), f"{name}/{label} is empty"


@requires_shared
def test_sample_photos_and_rows_are_unchanged_copies_of_the_source():
    source = SHARED / "kaggle-format"
    source_rows = rows_of(source / "train.csv")
    for path in (REAL_SAMPLE / "images").iterdir():
        assert path.read_bytes() == (source / "images" / path.name).read_bytes(), f"{path.name} differs"
    names = {path.name for path in (REAL_SAMPLE / "images").iterdir()}
    assert rows_of(REAL_SAMPLE / "train.csv") == [row for row in source_rows if row[0] in names]
    classes = Counter(row[1] for row in source_rows)
    share = classes["face_with_mask"] / (classes["face_with_mask"] + classes["face_no_mask"])
    assert share == pytest.approx(FULL_SET_MASK_SHARE)


@requires_shared
def test_pick_sample_redoes_the_committed_pick(tmp_path):
    pick_sample = load_pick_sample()
    picked = pick_sample.pick_sample(SHARED / "kaggle-format", tmp_path, count=60, seed=0)
    assert picked == sorted(path.name for path in (REAL_SAMPLE / "images").iterdir())
    assert (tmp_path / "train.csv").read_bytes() == (REAL_SAMPLE / "train.csv").read_bytes()
    assert (tmp_path / "README.md").read_text() == (REAL_SAMPLE / "README.md").read_text()


def test_pick_steers_the_mask_share_and_skips_large_files():
    pick_sample = load_pick_sample()
    # Ten mask-only photos and five with a no-mask face (share 0.8); one more, too large to take.
    faces = {f"m{i}.jpg": Counter({"mask": 4}) for i in range(10)}
    faces |= {f"n{i}.jpg": Counter({"mask": 2, "no-mask": 2}) for i in range(5)}
    faces["big.jpg"] = Counter({"no-mask": 1})
    sizes = {name: 1000 for name in faces} | {"big.jpg": pick_sample.MAX_FILE_BYTES + 1}
    picked = pick_sample.pick_photos(faces, sizes, count=6, seed=0)
    assert "big.jpg" not in picked and len(picked) == 6
    assert picked == pick_sample.pick_photos(faces, sizes, count=6, seed=0)
    chosen = sum((faces[name] for name in picked), Counter())
    assert chosen["no-mask"] >= 2 and 0.6 <= pick_sample.mask_share(chosen) <= 0.9
