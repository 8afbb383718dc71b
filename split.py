"""Cut the faces of the Kaggle "Face Mask Detection" photos into train/valid/test crop folders.

The first stage of the project: everything later trains and evaluates on what this writes.

    python split.py <images dir> <train.csv> 80 15 5          # percentages, summing to 100
    python split.py <images dir> <train.csv> 0.8 0.15 0.05    # or fractions, summing to 1

writes `data/{train,valid,test}/{mask,no-mask}/` crops and `data/manifest.csv` (one row per
crop: path, split, label, source photo, CSV line, class and the box as cropped).

The rules, and why:
- The CSV header says `name,x1,x2,y1,y2,classname`, but its four number columns hold xmin, ymin,
  xmax, ymax in that order (the Kaggle file's trap). Columns are found by name, so extra
  columns and any column order are fine.
- `face_with_mask` -> mask, `face_no_mask` -> no-mask, `face_with_mask_incorrect` follows
  `--incorrect`; the object classes (hat, eyeglasses, ...) are not faces and are ignored.
- The split is by source photo, never by crop: faces of one photo in both train and test would
  leak. Photos are assigned greedily (biggest first, seeded shuffle among equals) to the split
  whose per-class target they bring closest, which keeps each split's size near its share and
  its mask/no-mask balance near the whole's.
- Photos are read as everything else in the project reads them (`facemask.images.load_image`:
  EXIF orientation applied, any mode to RGB, 16-bit scaled down) and a face is cut with the same
  box arithmetic and default margin as detection cuts it (`facemask.images.face_box`,
  `facemask.DEFAULT_MARGIN`), so the classifier trains on the faces it will be served.
- Crops are saved as PNG, losslessly: a JPEG crop of a JPEG photo differs from the face cut at
  run time by up to about 20 grey levels, and the training pipeline would learn those artefacts.
- Each photo is decoded once for all its faces, in parallel worker processes; crop files are
  named `<photo stem>_r<CSV line>.png` so the output does not depend on the worker count and
  the same input and seed give byte-identical files.
- The output appears whole or not at all: it is written into a hidden folder beside `--out`
  and renamed into place at the end; any failure, Ctrl-C or SIGTERM removes it.
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, replace
from multiprocessing import Pool
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from facemask import CLASS_NAMES, DEFAULT_MARGIN, DEFAULT_SEED, MAX_MARGIN, SPLITS
from facemask.cli import ArgumentParser, number_in
from facemask.images import ImageError, clip_box, face_box, load_image, peek_image, to_rgb

# Header name -> what the column really holds (the Kaggle trap: x2 is ymin, y1 is xmax).
COORDINATE_COLUMNS = {"x1": "xmin", "x2": "ymin", "y1": "xmax", "y2": "ymax"}
MASK_CLASS, NO_MASK_CLASS, INCORRECT_CLASS = "face_with_mask", "face_no_mask", "face_with_mask_incorrect"
# zlib level 1: crops are written once and read a few times; level 6 takes 2.4x as long for 3% less disk.
PNG_COMPRESS_LEVEL = 1
MANIFEST_COLUMNS = ["path", "split", "label", "source", "csv_line", "classname", "xmin", "ymin", "xmax", "ymax"]
# Reasons a face row yields no crop, in the order the summary lists them.
SKIP_NOT_FOUND, SKIP_UNREADABLE = "photo not found", "photo unreadable"
SKIP_EMPTY, SKIP_SMALL = "box empty or outside the photo", "face smaller than --min-size"
SKIP_LONG_NAME = "photo name too long for its crops' file names"
# Box coordinates beyond a billion pixels are typos (photos are capped at 40 megapixels); bounding
# them, and the margin, keeps every sum and product of the box arithmetic a finite float.
MAX_COORDINATE = 1e9
NAME_MAX = 255  # bytes in one file name, on Linux and macOS file systems
CROP_NAME_EXTRA = len("_r4294967295.jpeg")  # what a crop adds to its photo's stem, at most


class SplitError(Exception):
    """Bad input or a failed step; `main` prints it as one `error:` line and exits 1."""


class UsageError(SplitError):
    """A bad command-line value; exits 2 like argparse's own usage errors."""


class Terminated(BaseException):
    """SIGTERM arrived (from `kill`, `timeout` or a service manager): stop and clean up as on Ctrl-C."""


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(signum)


@dataclass(frozen=True)
class BoxRow:
    """One CSV row, with the coordinates under their real meaning."""

    line: int
    name: str
    classname: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclass(frozen=True)
class Crop:
    """One face to cut: where from, which box, and where to (relative to the output folder)."""

    source: str
    line: int
    classname: str
    label: str
    box: tuple[int, int, int, int]
    filename: str
    split: str = ""

    @property
    def path(self) -> str:
        return f"{self.split}/{self.label}/{self.filename}"


# ---------------------------------------------------------------- reading the CSV


def parse_ratios(texts: list[str]) -> np.ndarray:
    """Three shares as percentages (sum 100) or fractions (sum 1) -> fractions."""
    values = []
    for split, text in zip(SPLITS, texts, strict=True):
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"the {split} share {text!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"the {split} share {text!r} must be a number >= 0")
        values.append(value)
    total = sum(values)
    if math.isclose(total, 100, abs_tol=1e-6):
        return np.array(values) / 100
    if math.isclose(total, 1, abs_tol=1e-6):
        return np.array(values)
    raise UsageError(f"the shares {' '.join(texts)} sum to {total:g}; "
                     "they must sum to 100 (percentages) or to 1 (fractions)")


@functools.lru_cache(maxsize=65536)  # a photo's name repeats on every one of its rows; pathlib is slow
def check_name(name: str) -> str | None:
    """Why a photo name is refused (empty, absolute, or climbing out of the images folder), or None."""
    if not name:
        return "is empty"
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(name).drive:
        return f"{name!r} is an absolute path; names must be relative to the images folder"
    if ".." in posix.parts:
        return f"{name!r} climbs out of the images folder"
    return None


def _parse_row(csv_path: Path, line: int, fields: list[str], columns: dict[str, int]) -> BoxRow:
    if len(fields) <= max(columns.values()):
        raise SplitError(f"{csv_path}: line {line}: {len(fields)} fields, the header has {max(columns.values()) + 1}")
    name = fields[columns["name"]].strip()
    problem = check_name(name)
    if problem:
        raise SplitError(f"{csv_path}: line {line}, column 'name': {problem}")
    coordinates = {}
    for header, meaning in COORDINATE_COLUMNS.items():
        text = fields[columns[header]].strip()
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise SplitError(f"{csv_path}: line {line}, column {header!r} ({meaning}): {text!r} is not a number")
        if abs(value) > MAX_COORDINATE:
            raise SplitError(f"{csv_path}: line {line}, column {header!r} ({meaning}): {text!r} is not a pixel "
                             f"coordinate (beyond ±{MAX_COORDINATE:g})")
        coordinates[meaning] = value
    return BoxRow(line=line, name=normal_name(name), classname=fields[columns["classname"]].strip(), **coordinates)


@functools.lru_cache(maxsize=65536)
def normal_name(name: str) -> str:
    """One spelling per photo: `./x.jpg`, `x.jpg` and `sub//x.jpg` vs `sub/x.jpg` must group as one photo."""
    return PurePosixPath(name).as_posix()


def read_rows(csv_path: Path) -> list[BoxRow]:
    """Every data row of a Kaggle-layout CSV; raises SplitError naming the line and column of a bad one."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise SplitError(f"{csv_path}: the file is empty (expected the header name,x1,x2,y1,y2,classname)")
            columns = {title.strip().lower(): i for i, title in enumerate(header)}
            missing = [c for c in ("name", "classname", *COORDINATE_COLUMNS) if c not in columns]
            if missing:
                raise SplitError(f"{csv_path}: line 1: missing column(s) {', '.join(missing)} "
                                 f"(the header is {','.join(header)})")
            columns = {c: columns[c] for c in ("name", "classname", *COORDINATE_COLUMNS)}
            rows = []
            for fields in reader:
                if any(field.strip() for field in fields):  # skip blank lines
                    rows.append(_parse_row(csv_path, reader.line_num, fields, columns))
    except FileNotFoundError:
        raise SplitError(f"{csv_path}: CSV file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SplitError(f"{csv_path}: cannot read the CSV: {e}") from None
    return rows


def class_rule(classname: str, incorrect: str) -> tuple[str, str | None]:
    """(rule name for the summary, label or None) for one class name."""
    if classname == MASK_CLASS:
        return f"{MASK_CLASS} -> mask", "mask"
    if classname == NO_MASK_CLASS:
        return f"{NO_MASK_CLASS} -> no-mask", "no-mask"
    if classname == INCORRECT_CLASS:
        label = None if incorrect == "drop" else incorrect
        return f"{INCORRECT_CLASS} -> {label or 'dropped'} (--incorrect {incorrect})", label
    return "other classes -> ignored (not faces)", None


def apply_class_rules(rows: list[BoxRow], incorrect: str) -> tuple[list[tuple[BoxRow, str]], Counter]:
    """The face rows with their label, and how many rows each class rule took."""
    faces = []
    # Every rule listed, even with 0 rows, in this order: mask, no-mask, incorrect, others.
    taken = Counter({class_rule(c, incorrect)[0]: 0 for c in (MASK_CLASS, NO_MASK_CLASS, INCORRECT_CLASS, "")})
    for row in rows:
        rule, label = class_rule(row.classname, incorrect)
        taken[rule] += 1
        if label:
            faces.append((row, label))
    return faces, taken


# ---------------------------------------------------------------- planning the crops


def crop_box(row: BoxRow, width: int, height: int, margin: float = DEFAULT_MARGIN,
             min_size: int = 0) -> tuple[int, ...] | str:
    """The pixel box to cut for one face (widened by `margin`, clipped to the photo), or why it is skipped.

    The box is `facemask.images.face_box`, the one detection crops with, so train and serve cut alike.
    """
    x0, y0, x1, y1 = clip_box((row.xmin, row.ymin, row.xmax, row.ymax), width, height)
    if row.xmax <= row.xmin or row.ymax <= row.ymin or x1 <= x0 or y1 <= y0:
        return SKIP_EMPTY
    if min(x1 - x0, y1 - y0) < min_size:  # the face itself, not the margin around it
        return SKIP_SMALL
    box = face_box((row.xmin, row.ymin, row.xmax, row.ymax), margin, width, height)
    return box if box[2] > box[0] and box[3] > box[1] else SKIP_EMPTY


def crop_suffix(source: str, image_format: str | None) -> str:
    """Every crop is a PNG, whatever the photo's format: lossless, so it holds the pixels detection will cut."""
    return ".png"


def inspect_photos(images_dir: Path, names: list[str]) -> tuple[dict[str, tuple[int, int, str | None]], dict]:
    """Upright size and format of each photo from its header (no pixel decoding); the missing and unreadable ones."""
    found, problems = {}, {}
    for name in names:
        path = images_dir / name
        if name_too_long(name):
            problems[name] = SKIP_LONG_NAME
            continue
        try:
            if not path.is_file():
                problems[name] = SKIP_NOT_FOUND
                continue
            found[name] = peek_image(path)
        except ImageError:
            problems[name] = SKIP_UNREADABLE
    return found, problems


def name_too_long(name: str) -> bool:
    """A part of the photo's name, or the name of a crop of it, over the file system's 255 bytes."""
    parts = PurePosixPath(name).parts
    return (any(len(part.encode()) > NAME_MAX for part in parts)
            or len(PurePosixPath(name).stem.encode()) + CROP_NAME_EXTRA > NAME_MAX)


def plan_crops(
    faces: list[tuple[BoxRow, str]], photos: dict, margin: float, min_size: int
) -> tuple[list[Crop], Counter]:
    """A Crop for every face that can be cut, and per-reason counts of the rows that cannot."""
    crops, skipped = [], Counter()
    for row, label in faces:
        if row.name not in photos:
            continue  # counted by the caller, which knows why the photo is missing
        width, height, image_format = photos[row.name]
        box = crop_box(row, width, height, margin, min_size)
        if isinstance(box, str):
            skipped[box] += 1
            continue
        filename = f"{PurePosixPath(row.name).stem}_r{row.line}{crop_suffix(row.name, image_format)}"
        crops.append(Crop(row.name, row.line, row.classname, label, box, filename))
    return crops, skipped


def assign_splits(label_counts: dict[str, Counter], ratios: np.ndarray, seed: int) -> dict[str, str]:
    """Photo name -> split, keeping every photo's faces together.

    Biggest photos first (ties in a seeded random order), each to the split where it most
    reduces the squared distance between per-split, per-class crop counts and their targets.
    Small photos come last and even out what the big ones left.
    """
    names = sorted(label_counts)
    counts = np.array([[label_counts[n][label] for label in CLASS_NAMES] for n in names], dtype=float)
    order = np.random.default_rng(seed).permutation(len(names))
    order = sorted(order, key=lambda i: -counts[i].sum())  # stable sort keeps the shuffle among equals
    targets = np.outer(ratios, counts.sum(axis=0))
    current = np.zeros_like(targets)
    assignment = {}
    for i in order:
        cost = ((current + counts[i] - targets) ** 2).sum(axis=1) - ((current - targets) ** 2).sum(axis=1)
        cost[ratios == 0] = np.inf  # a 0 share gets nothing (the cost alone never picks it; this makes it plain)
        best = int(np.argmin(cost))
        current[best] += counts[i]
        assignment[names[i]] = SPLITS[best]
    return assignment


# ---------------------------------------------------------------- cutting


def save_crop(image: Image.Image, box: tuple[int, int, int, int], path: str | Path) -> None:
    """Cut `box` from a decoded photo and save it in RGB as a PNG (lossless, whatever the file's name says)."""
    crop = to_rgb(image.crop(box), os.fspath(path))
    crop.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def cut_photo(task: tuple[str, str, list[tuple[tuple[int, int, int, int], str]]]) -> str | None:
    """Decode one photo once and save all its crops; the reason if the photo cannot be decoded.

    Runs in a worker process. Decoding errors (truncated file, not an image) are the photo's
    problem and are reported back; writing errors (disk full) are raised and stop the run.
    """
    photo_path, out_dir, jobs = task
    try:
        image = load_image(photo_path)  # upright and RGB, as detection reads a photo
    except ImageError as e:
        return str(e)
    for box, relative in jobs:
        save_crop(image, box, os.path.join(out_dir, relative))  # plain strings: pathlib costs here
    return None


def _worker_signals() -> None:
    # Ctrl-C goes to the whole process group: only the parent handles it, and it stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM is how the pool stops its workers: they must die of it, not inherit the parent's handler.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def cut_all(tasks: list, workers: int) -> dict[str, str]:
    """Run `cut_photo` over the tasks (in a pool when workers > 1); photo -> error for the failed ones."""
    failed = {}
    with tqdm(total=len(tasks), unit="photo", desc="cutting", file=sys.stderr) as progress:
        workers = min(workers, len(tasks))
        if workers <= 1:
            results = map(cut_photo, tasks)
            for task, error in zip(tasks, results, strict=True):
                _record(task, error, failed, progress)
            return failed
        chunksize = max(1, min(8, len(tasks) // (workers * 8)))  # small chunks: photos vary a lot in size
        with Pool(workers, initializer=_worker_signals) as pool:  # leaving the block terminates the workers
            for task, error in zip(tasks, pool.imap(cut_photo, tasks, chunksize), strict=True):
                _record(task, error, failed, progress)
    return failed


def _record(task: tuple, error: str | None, failed: dict, progress: tqdm) -> None:
    if error:
        failed[task[0]] = error
        progress.write(f"warning: {error}; its faces are skipped", file=sys.stderr)
    progress.update()


# ---------------------------------------------------------------- the output folder


def check_out(out: Path, force: bool, inputs: list[Path]) -> None:
    """Refuse a non-empty output folder without --force, and never let --force delete the inputs."""
    if not out.exists():
        ancestor = next(parent for parent in out.absolute().parents if parent.exists())
        if not ancestor.is_dir():
            raise SplitError(f"{out}: cannot create the output folder, {ancestor} is not a folder")
        return
    if not out.is_dir():
        raise SplitError(f"{out}: output path exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not force:
        raise SplitError(f"{out}: output folder is not empty; use --force to replace it")
    resolved = out.resolve()
    for inside in (*inputs, Path.cwd()):
        if inside.resolve() == resolved or resolved in inside.resolve().parents:
            raise SplitError(f"{out}: refusing to replace an output folder that contains {inside}")


def publish(temp: Path, out: Path, force: bool) -> None:
    """Swap the finished temporary folder into place, replacing `out` if it exists."""
    umask = os.umask(0)
    os.umask(umask)
    temp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the output should look like any folder
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        temp.rename(out)
        return
    if not force:  # something was written there while we worked
        raise SplitError(f"{out}: output folder is not empty; use --force to replace it")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    out.rename(old / out.name)
    try:
        temp.rename(out)
    except OSError:
        (old / out.name).rename(out)  # put the previous output back before reporting the failure
        old.rmdir()
        raise
    shutil.rmtree(old)


def write_manifest(path: Path, crops: list[Crop]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for c in crops:
            writer.writerow([c.path, c.split, c.label, c.source, c.line, c.classname, *c.box])


def format_summary(crops: list[Crop], taken: Counter, skipped: Counter, photos_skipped: Counter) -> str:
    """Crops per split and class, rows taken by each class rule, rows skipped and why."""
    table = Counter((c.split, c.label) for c in crops)
    total = max(1, len(crops))
    lines = [f"{'split':<8}{'mask':>8}{'no-mask':>9}{'total':>8}{'share':>8}{'mask %':>8}"]
    for split in (*SPLITS, "all"):
        mask = sum(n for (s, label), n in table.items() if label == "mask" and split in (s, "all"))
        no_mask = sum(n for (s, label), n in table.items() if label == "no-mask" and split in (s, "all"))
        both = mask + no_mask
        lines.append(f"{split:<8}{mask:>8}{no_mask:>9}{both:>8}{100 * both / total:>7.1f}%"
                     f"{100 * mask / max(1, both):>7.1f}%")
    lines += ["", "CSV rows taken by each class rule:"]
    lines += [f"  {rule:<58}{n:>7}" for rule, n in taken.items()]
    lines += ["", "face rows skipped:"]
    for reason in (SKIP_NOT_FOUND, SKIP_UNREADABLE, SKIP_LONG_NAME, SKIP_EMPTY, SKIP_SMALL):
        photos = f" ({photos_skipped[reason]} photos)" if reason in photos_skipped else ""
        lines.append(f"  {reason + photos:<58}{skipped[reason]:>7}")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="split.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", help="folder of the photos named in the CSV")
    parser.add_argument("csv", help="train.csv: name,x1,x2,y1,y2,classname (x1..y2 hold xmin,ymin,xmax,ymax)")
    for split in SPLITS:
        parser.add_argument(split, help=f"share of the {split} split (percent, or fraction if the three sum to 1)")
    parser.add_argument("--out", default="data", help="output folder (default: data)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--seed", type=number_in(int, 0), default=DEFAULT_SEED,
                        help=f"split seed, a whole number >= 0 (default: {DEFAULT_SEED})")
    parser.add_argument("--margin", type=number_in(float, 0, MAX_MARGIN), default=DEFAULT_MARGIN,
                        help=f"widen each box by this fraction of its size on every side, 0 to {MAX_MARGIN:g} "
                             f"(default: {DEFAULT_MARGIN}, the margin detection crops with)")
    parser.add_argument("--min-size", type=number_in(int, 0), default=0,
                        help="skip faces whose shorter side is under this many pixels (default: 0)")
    parser.add_argument("--incorrect", choices=["drop", "mask", "no-mask"], default="drop",
                        help="what face_with_mask_incorrect becomes (default: drop)")
    default_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    parser.add_argument("--workers", type=number_in(int, 1), default=default_workers, metavar="N",
                        help=f"processes cutting photos in parallel (default: all cores, here {default_workers})")
    return parser


def run(args: argparse.Namespace) -> int:
    ratios = parse_ratios([args.train, args.valid, args.test])
    images_dir, csv_path, out = Path(args.images), Path(args.csv), Path(args.out)
    if not images_dir.is_dir():
        raise SplitError(f"{images_dir}: images folder not found")
    rows = read_rows(csv_path)
    faces, taken = apply_class_rules(rows, args.incorrect)
    if not faces:
        raise SplitError(f"{csv_path}: no face rows ({MASK_CLASS}, {NO_MASK_CLASS}) among its {len(rows)} rows")
    check_out(out, args.force, [images_dir, csv_path])

    names = list(dict.fromkeys(row.name for row, _ in faces))
    photos, problems = inspect_photos(images_dir, names)
    if not photos and all(p == SKIP_NOT_FOUND for p in problems.values()):
        raise SplitError(f"{csv_path}: none of its {len(names)} photos is in {images_dir} (wrong images folder?)")
    for shown, (name, problem) in enumerate(problems.items()):
        if shown == 20:
            print(f"warning: ... and {len(problems) - 20} more photos skipped", file=sys.stderr)
            break
        print(f"warning: {images_dir / name}: {problem}; its faces are skipped", file=sys.stderr)

    crops, skipped = plan_crops(faces, photos, args.margin, args.min_size)
    if not crops:
        raise SplitError(f"{csv_path}: no face left to crop ({sum(skipped.values())} boxes empty or too small, "
                         f"{len(problems)} photos missing or unreadable)")
    for row, _ in faces:
        if row.name in problems:
            skipped[problems[row.name]] += 1
    per_photo: dict[str, Counter] = {}
    for crop in crops:
        per_photo.setdefault(crop.source, Counter())[crop.label] += 1
    assignment = assign_splits(per_photo, ratios, args.seed)
    crops = [replace(c, split=assignment[c.source]) for c in crops]

    crops, failed = write_output(crops, images_dir, out, ratios, args.workers, args.force)
    skipped[SKIP_UNREADABLE] += failed.total()
    photos_skipped = Counter(problems.values()) + Counter({SKIP_UNREADABLE: len(failed)})
    print(f"{len(crops)} crops from {len({c.source for c in crops})} photos written to {out}/ (seed {args.seed})")
    print(format_summary(crops, taken, skipped, photos_skipped))
    return 0


def write_output(
    crops: list[Crop], images_dir: Path, out: Path, ratios: np.ndarray, workers: int, force: bool
) -> tuple[list[Crop], Counter]:
    """Cut every crop into a temporary folder beside `out`, add the manifest, and swap it in.

    Returns the crops written (in manifest order) and, per photo that failed to decode, how
    many crops it lost. On any failure, Ctrl-C included, the temporary folder is removed.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        for split, share in zip(SPLITS, ratios, strict=True):
            for label in CLASS_NAMES if share > 0 else ():
                (temp / split / label).mkdir(parents=True)
        jobs: dict[str, list] = {}
        for crop in crops:
            jobs.setdefault(crop.source, []).append((crop.box, crop.path))
        tasks = [(str(images_dir / name), str(temp), boxes) for name, boxes in jobs.items()]
        failed_paths = cut_all(tasks, workers)
        failed = Counter({name: len(boxes) for name, boxes in jobs.items() if str(images_dir / name) in failed_paths})
        crops = sorted((c for c in crops if c.source not in failed),
                       key=lambda c: (SPLITS.index(c.split), c.label, c.source, c.line))
        write_manifest(temp / "manifest.csv", crops)
        publish(temp, out, force)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)  # also on Ctrl-C or SIGTERM: never leave a half-written folder
        raise
    return crops, failed


def main(argv: list[str] | None = None) -> int:
    """Run split.py with `argv` (default: the command line); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else 0
    # Only the main thread may set handlers; split.main called from another thread keeps the default.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (SplitError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; no output was written", file=sys.stderr)
        return 130
    except Terminated:
        print("error: terminated (SIGTERM); no output was written", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
