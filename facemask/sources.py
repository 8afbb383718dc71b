"""Which photos to crop: the Kaggle download when it is present, else the real sample shipped in `sample/`.

The Kaggle wobot "Face Mask Detection" set needs a Kaggle account; `kagglehub` fetches it into its
cache (credentials from ~/.kaggle/kaggle.json or KAGGLE_USERNAME and KAGGLE_KEY):

    import kagglehub
    kagglehub.dataset_download("wobotintelligence/face-mask-detection-dataset")

Without it, the 60 CC0 photos in the repository's `sample/` stand in, so the notebook always runs
on real faces. `find_photos` says which it found; `Photos.split_args` are split.py's arguments;
`ensure_crops` is the notebook's data step: the crops already there, or those photos cut.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facemask import DEFAULT_SEED
from facemask.annotations import AnnotationError, read_rows
from facemask.data import DataError, check_data_dir
from facemask.splitting import SplitError, format_summary, fractions, split_photos

KAGGLE_DATASET = "wobotintelligence/face-mask-detection-dataset"
# The full set has enough photos for a small test split; the sample's 60 need 15% to get no-mask
# faces into every split.
KAGGLE_RATIOS = ("80", "15", "5")
SAMPLE_RATIOS = ("70", "15", "15")
PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the clone, when run from it or installed with -e
CHOICES = ("auto", "kaggle", "sample")


@dataclass(frozen=True)
class Photos:
    """Photos and their train.csv, with the split ratios that suit their number."""

    kind: str  # "kaggle" or "sample"
    images: Path
    csv: Path
    ratios: tuple[str, str, str]

    def split_args(self, out: Path | str) -> list[str]:
        """split.py's arguments that crop these photos into `out` (as `ensure_crops` does)."""
        return [str(self.images), str(self.csv), *self.ratios, "--out", str(out)]

    def describe(self) -> str:
        what = "the Kaggle photos" if self.kind == "kaggle" else "the embedded real sample (CC0 photos)"
        return f"{what}: {self.images} with {self.csv}"


def first_photo_name(csv_path: Path) -> str | None:
    """The photo named on the CSV's first data row (None for an empty, unreadable or malformed file)."""
    try:
        rows = read_rows(csv_path)
    except AnnotationError:
        return None
    return rows[0].name if rows else None


def kaggle_layout(root: Path | str) -> Photos | None:
    """train.csv under `root` and the folder holding its photos, wherever the download nests them.

    The wobot archive keeps train.csv at its top and the photos some folders down
    ("Medical mask/Medical mask/Medical Mask/images"), so the photo folder is found by looking for
    the file named on the CSV's first row.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    csv_path = root / "train.csv"
    if not csv_path.is_file():
        csv_path = next(iter(sorted(root.rglob("train.csv"))), None)
    name = first_photo_name(csv_path) if csv_path else None
    if name is None:
        return None
    photo = next(iter(sorted(root.rglob(Path(name).name))), None)
    return Photos("kaggle", photo.parent, csv_path, KAGGLE_RATIOS) if photo else None


def kagglehub_cache(dataset: str = KAGGLE_DATASET) -> Path | None:
    """The newest version of `dataset` that kagglehub already downloaded, without asking the network."""
    cache = Path(os.environ.get("KAGGLEHUB_CACHE", Path.home() / ".cache" / "kagglehub"))
    versions = cache / "datasets" / dataset / "versions"
    numbered = [path for path in versions.glob("*") if path.is_dir() and path.name.isdigit()]
    return max(numbered, key=lambda path: int(path.name)) if numbered else None


def find_kaggle(kaggle_dir: Path | str | None = None) -> Photos | None:
    """The Kaggle photos in `kaggle_dir`, else in ./kaggle (a download unpacked there), else kagglehub's
    cache, else where Kaggle and Colab notebooks mount an attached data set (/kaggle/input)."""
    mounted = Path("/kaggle/input") / KAGGLE_DATASET.split("/")[1]
    candidates = [kaggle_dir] if kaggle_dir else [Path("kaggle"), kagglehub_cache(), mounted]
    for candidate in candidates:
        photos = kaggle_layout(candidate) if candidate else None
        if photos:
            return photos
    return None


def find_sample(sample_dir: Path | str | None = None) -> Photos | None:
    """The embedded sample in `sample_dir`, else ./sample, else the clone's sample/ beside this package."""
    candidates = [Path(sample_dir)] if sample_dir else [Path("sample"), PROJECT_ROOT / "sample"]
    for folder in candidates:
        if (folder / "train.csv").is_file() and (folder / "images").is_dir():
            return Photos("sample", folder / "images", folder / "train.csv", SAMPLE_RATIOS)
    return None


def find_photos(which: str = "auto", kaggle_dir: Path | str | None = None,
                sample_dir: Path | str | None = None) -> Photos:
    """The photos to crop: "kaggle", "sample", or "auto" (Kaggle when present, else the sample).

    A `kaggle_dir` that was given must hold the Kaggle files, "auto" or not: a typo falls back on
    nothing. Raises FileNotFoundError saying where it looked.
    """
    if which not in CHOICES:
        raise ValueError(f"which must be one of {', '.join(CHOICES)}, got {which!r}")
    kaggle = find_kaggle(kaggle_dir) if which in ("auto", "kaggle") else None
    if kaggle or which == "kaggle" or (which == "auto" and kaggle_dir):
        if kaggle is None:
            where = kaggle_dir or f"./kaggle or kagglehub's cache of {KAGGLE_DATASET}"
            raise FileNotFoundError(f"no Kaggle train.csv with its photos in {where}: download them first")
        return kaggle
    sample = find_sample(sample_dir)
    if sample is None:
        where = sample_dir or f"./sample or {PROJECT_ROOT / 'sample'}"
        raise FileNotFoundError(f"no sample (train.csv and images/) in {where}: run from a clone of the project")
    return sample


def ensure_crops(data_dir: Path | str, which: str = "auto", kaggle_dir: Path | str | None = None) -> str:
    """Make sure `data_dir` holds split.py's crops, and say how: the crops already there when the folder
    passes the training command's check (`check_data_dir`), else the photos `find_photos` chooses, cut
    into it by split.py. A folder that fails the check but holds files is left alone: DataError.
    """
    data_dir = Path(data_dir)
    try:
        check_data_dir(data_dir)
        return f"using the crops already in {data_dir} (delete that folder to cut them again)"
    except DataError as error:
        missing = error
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise DataError(f"{data_dir} holds no complete set of crops ({missing}) but is not empty, so nothing is "
                        "cut into it: empty or delete it, or set DATA to another folder")
    photos = find_photos(which, kaggle_dir)
    print(f"no crops yet ({missing}): cutting {photos.describe()}", flush=True)
    try:
        result = split_photos(photos.images, photos.csv, data_dir, fractions([float(r) for r in photos.ratios]))
    except (SplitError, AnnotationError, OSError) as error:
        raise DataError(f"split.py could not cut {photos.images} into {data_dir}: {error}") from None
    print(format_summary(result, data_dir, DEFAULT_SEED))
    return f"using the crops just cut into {data_dir}"
