"""Cut the faces of the Kaggle "Face Mask Detection" photos into train/valid/test crop folders.

`split.py IMAGES CSV 80 10 10` (or `python -m facemask.split`) writes PNG crops into `{train,valid,test}/
{mask,no-mask}/` and `manifest.csv` (a row a crop: path, split, label, photo, CSV line, class, box as cut,
and the width and height of the annotated face inside the photo, by which evaluation reports face sizes).
- The header says `name,x1,x2,y1,y2,classname` but the number columns hold xmin, ymin, xmax, ymax (the
  Kaggle trap). Columns are found by name. Object classes (hat, eyeglasses, ...) are not faces: ignored.
- The split is by photo, never by crop: faces of one photo in train and test would leak. Photos go
  greedily (biggest first, seeded shuffle among equals) to the split whose per-class target they bring
  closest, so each split keeps near its share and near the whole's mask/no-mask balance.
- Photos are read and faces boxed as detection does (`facemask.images`, `DEFAULT_MARGIN`), and crops are
  lossless PNG (a JPEG crop differs by up to 20 grey levels): training sees the pixels serving will cut.
- Each photo is decoded once for all its faces; crops are named `<photo stem>_r<CSV line>.png`, so the
  same input and seed give the same bytes whatever the number of workers.
- The output folder appears whole or not at all (`facemask.atomic_folder`), Ctrl-C and SIGTERM included;
  either stops the cutting threads between two crops (`facemask.cli.stoppable`), even inside a photo
  with thousands of boxes.
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import argparse
import csv
import math
import os
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from facemask import CLASS_NAMES, DEFAULT_MARGIN, DEFAULT_SEED, MAX_MARGIN, SPLITS, atomic_folder, not_a_regular_file
from facemask.cli import ArgumentParser, fail, number_in, printable, stop_message, stoppable
from facemask.images import Box, ImageError, clip_box, face_box, load_image, peek_image

# Header name -> what the column really holds (the Kaggle trap: x2 is ymin, y1 is xmax).
COORDINATE_COLUMNS = {"x1": "xmin", "x2": "ymin", "y1": "xmax", "y2": "ymax"}
MASK_CLASS, NO_MASK_CLASS, INCORRECT_CLASS = "face_with_mask", "face_no_mask", "face_with_mask_incorrect"
# zlib level 1: crops are written once and read a few times; level 6 takes 2.4x as long for 3% less disk.
PNG_COMPRESS_LEVEL = 1
MANIFEST_COLUMNS = ["path", "split", "label", "source", "csv_line", "classname", "xmin", "ymin", "xmax", "ymax",
                    "face_width", "face_height"]
# Why a face row yields no crop, in the order the summary lists them.
SKIP_NOT_FOUND, SKIP_UNREADABLE, SKIP_LONG_NAME, SKIP_EMPTY, SKIP_SMALL, SKIP_DUPLICATE = SKIP_REASONS = (
    "photo not found", "photo unreadable", "photo name too long for its crops' file names",
    "box empty or outside the photo", "face smaller than --min-size", "duplicate of an earlier row")
# Coordinates beyond a billion pixels are typos (photos are capped at 40 megapixels); bounding them,
# and the margin, keeps every sum and product of the box arithmetic a finite float.
MAX_COORDINATE = 1e9
NAME_MAX = 255  # bytes in one file name, on Linux and macOS file systems
CROP_NAME_EXTRA = len("_r4294967295.png")  # what a crop's name adds to its photo's stem, at most
WARNINGS_SHOWN = 20  # skipped photos named one by one; the rest are counted


class SplitError(Exception):
    """Bad input or a failed step; `main` prints it as one `error:` line and exits 1."""


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
    """One face to cut: from which photo and CSV line, which box, and into which split."""

    source: str
    line: int
    classname: str
    label: str
    box: Box
    split: str = ""
    face_size: tuple[int, int] = (0, 0)  # the annotated box's width and height inside the photo, before the margin

    @property
    def path(self) -> str:
        """Where the crop goes, relative to the output folder."""
        return f"{self.split}/{self.label}/{PurePosixPath(self.source).stem}_r{self.line}.png"


@dataclass
class Plan:
    """The crops to cut, each in its split, and the counts the summary reports."""

    crops: list[Crop]
    taken: Counter  # CSV rows per class rule
    skipped: Counter  # face rows per reason they give no crop
    problems: dict[str, str]  # photo name -> why it is skipped


def fractions(shares: Sequence[float]) -> np.ndarray:
    """Three shares as percentages (sum 100) or fractions (sum 1) -> fractions; ValueError otherwise."""
    total = sum(shares)
    for whole in (100, 1):
        if math.isclose(total, whole, abs_tol=1e-6):
            return np.array(shares) / whole
    raise ValueError(f"the shares {' '.join(f'{s:g}' for s in shares)} sum to {total:g}; "
                     "they must sum to 100 (percentages) or to 1 (fractions)")


def check_name(name: str) -> str | None:
    """Why a photo name is refused (empty, absolute, or climbing out of the images folder), or None."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if not name:
        return "is empty"
    if posix.is_absolute() or PureWindowsPath(name).drive:
        return f"{name!r} is an absolute path; names must be relative to the images folder"
    return f"{name!r} climbs out of the images folder" if ".." in posix.parts else None


def parse_row(csv_path: Path, line: int, fields: list[str], columns: dict[str, int]) -> BoxRow:
    """One data row; a SplitError names the file, the line and the column of what is wrong."""
    if len(fields) <= max(columns.values()):
        raise SplitError(f"{csv_path}: line {line}: {len(fields)} fields, the header has {max(columns.values()) + 1}")
    name = fields[columns["name"]].strip()
    if problem := check_name(name):
        raise SplitError(f"{csv_path}: line {line}, column 'name': {problem}")
    coordinates = {}
    for header, meaning in COORDINATE_COLUMNS.items():
        text = fields[columns[header]].strip()
        where = f"{csv_path}: line {line}, column {header!r} ({meaning}): {text!r}"
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise SplitError(f"{where} is not a number")
        if abs(value) > MAX_COORDINATE:
            raise SplitError(f"{where} is not a pixel coordinate (beyond ±{MAX_COORDINATE:g})")
        coordinates[meaning] = value
    # One spelling per photo, or its faces could land in two splits: `./x.jpg` is `x.jpg`, `a//x.jpg` is `a/x.jpg`.
    name = PurePosixPath(name).as_posix()
    return BoxRow(line=line, name=name, classname=fields[columns["classname"]].strip(), **coordinates)


def read_rows(csv_path: Path) -> list[BoxRow]:
    """Every data row of a Kaggle-layout CSV; raises SplitError naming the line and column of a bad one."""
    wanted = ("name", "classname", *COORDINATE_COLUMNS)
    if problem := not_a_regular_file(csv_path):
        raise SplitError(f"{csv_path}: {problem}")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise SplitError(f"{csv_path}: the file is empty (expected the header name,x1,x2,y1,y2,classname)")
            found = {title.strip().lower(): i for i, title in enumerate(header)}
            if missing := [c for c in wanted if c not in found]:
                raise SplitError(f"{csv_path}: line 1: missing column(s) {', '.join(missing)} "
                                 f"(the header is {','.join(header)})")
            columns = {c: found[c] for c in wanted}
            return [parse_row(csv_path, reader.line_num, fields, columns)
                    for fields in reader if any(field.strip() for field in fields)]  # blank lines skipped
    except FileNotFoundError:
        raise SplitError(f"{csv_path}: CSV file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SplitError(f"{csv_path}: cannot read the CSV: {e}") from None


def apply_class_rules(rows: list[BoxRow], incorrect: str) -> tuple[list[tuple[BoxRow, str]], Counter]:
    """The face rows with their label, and how many rows each class rule took (every rule, in this order)."""
    labels = {MASK_CLASS: "mask", NO_MASK_CLASS: "no-mask", INCORRECT_CLASS: None if incorrect == "drop" else incorrect}
    rules = {name: f"{name} -> {label or 'dropped'}" for name, label in labels.items()}
    rules[INCORRECT_CLASS] += f" (--incorrect {incorrect})"
    rules[""] = "other classes -> ignored (not faces)"
    taken = Counter(dict.fromkeys(rules.values(), 0))
    faces = []
    for row in rows:
        classname = row.classname if row.classname in labels else ""
        taken[rules[classname]] += 1
        if labels.get(classname):
            faces.append((row, labels[classname]))
    return faces, taken


def face_size(row: BoxRow, width: int, height: int) -> tuple[int, int]:
    """The annotated face's width and height in whole pixels, clipped to its photo (the margin not included)."""
    x0, y0, x1, y1 = clip_box((row.xmin, row.ymin, row.xmax, row.ymax), width, height)
    return max(0, x1 - x0), max(0, y1 - y0)


def crop_box(row: BoxRow, width: int, height: int, margin: float = DEFAULT_MARGIN, min_size: int = 0) -> Box | str:
    """The pixels to cut for one face (detection's `face_box`, so train and serve cut alike), or why not."""
    face_width, face_height = face_size(row, width, height)
    if row.xmax <= row.xmin or row.ymax <= row.ymin or face_width == 0 or face_height == 0:
        return SKIP_EMPTY
    if min(face_width, face_height) < min_size:  # the face itself, not the margin around it
        return SKIP_SMALL
    box = face_box((row.xmin, row.ymin, row.xmax, row.ymax), margin, width, height)
    return box if box[2] > box[0] and box[3] > box[1] else SKIP_EMPTY


def photo_sizes(images_dir: Path, names: list[str]) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """Upright (width, height) of each photo from its header alone; why the others are skipped."""
    sizes, problems = {}, {}
    for name in names:
        path = PurePosixPath(name)
        longest = max(len(part.encode()) for part in (*path.parts, path.stem + "_" * CROP_NAME_EXTRA))
        if longest > NAME_MAX:  # the file system would refuse the photo's name, or its crops' names
            problems[name] = SKIP_LONG_NAME
        elif not_a_regular_file(images_dir / name):  # a FIFO would block the reading thread forever
            problems[name] = SKIP_UNREADABLE
        elif not (images_dir / name).is_file():
            problems[name] = SKIP_NOT_FOUND
        else:
            try:
                sizes[name] = peek_image(images_dir / name)[:2]
            except ImageError:
                problems[name] = SKIP_UNREADABLE
    return sizes, problems


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


def plan(args: argparse.Namespace) -> Plan:
    """Every face to crop, in its split; warns on stderr of the photos skipped. Reads headers, no pixels."""
    images_dir, csv_path = Path(args.images), Path(args.csv)
    rows = read_rows(csv_path)
    faces, taken = apply_class_rules(rows, args.incorrect)
    if not faces:
        raise SplitError(f"{csv_path}: no face rows ({MASK_CLASS}, {NO_MASK_CLASS}) among its {len(rows)} rows")
    faces, duplicates = drop_duplicates(faces)
    if duplicates:
        repeat, first = duplicates[0]
        print(f"warning: {printable(csv_path)}: {len(duplicates)} duplicate row{'s' * (len(duplicates) > 1)}, cut "
              f"once (the first: line {repeat.line} repeats line {first.line})", file=sys.stderr)
    names = list(dict.fromkeys(row.name for row, _ in faces))
    sizes, problems = photo_sizes(images_dir, names)
    if not sizes and all(p == SKIP_NOT_FOUND for p in problems.values()):
        raise SplitError(f"{csv_path}: none of its {len(names)} photos is in {images_dir} (wrong images folder?)")
    for name, problem in list(problems.items())[:WARNINGS_SHOWN]:
        why = not_a_regular_file(images_dir / name) if problem == SKIP_UNREADABLE else None
        print(f"warning: {printable(images_dir / name)}: {why or problem}; its faces are skipped", file=sys.stderr)
    if len(problems) > WARNINGS_SHOWN:
        print(f"warning: ... and {len(problems) - WARNINGS_SHOWN} more photos skipped", file=sys.stderr)
    crops, skipped = [], Counter({SKIP_DUPLICATE: len(duplicates)} if duplicates else {})
    for row, label in faces:
        box = problems.get(row.name) or crop_box(row, *sizes[row.name], args.margin, args.min_size)
        if isinstance(box, str):
            skipped[box] += 1
        else:
            crops.append(Crop(row.name, row.line, row.classname, label, box,
                              face_size=face_size(row, *sizes[row.name])))
    if not crops:
        raise SplitError(f"{csv_path}: no face left to crop ({skipped[SKIP_EMPTY] + skipped[SKIP_SMALL]} boxes "
                         f"empty or too small, {len(problems)} photos missing or unreadable)")
    per_photo: dict[str, Counter] = {}
    for crop in crops:
        per_photo.setdefault(crop.source, Counter())[crop.label] += 1
    assignment = assign_splits(per_photo, args.ratios, args.seed)
    return Plan([replace(c, split=assignment[c.source]) for c in crops], taken, skipped, problems)


def drop_duplicates(faces: list[tuple[BoxRow, str]]) -> tuple[list[tuple[BoxRow, str]], list[tuple[BoxRow, BoxRow]]]:
    """The face rows without repeats of an earlier row (same photo, class and box: one face, cut once),
    and each repeat with the row it repeats."""
    first: dict[tuple, BoxRow] = {}
    kept, duplicates = [], []
    for row, label in faces:
        key = (row.name, row.classname, row.xmin, row.ymin, row.xmax, row.ymax)
        if key in first:
            duplicates.append((row, first[key]))
        else:
            first[key] = row
            kept.append((row, label))
    return kept, duplicates


def save_crop(image: Image.Image, box: Box, path: str | Path) -> None:
    """Cut `box` from a decoded photo and save it as a PNG (lossless, whatever the file's name says)."""
    image.crop(box).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def cut_photo(photo: Path, crops: list[Crop], folder: Path, cancel: threading.Event | None = None) -> str | None:
    """Decode a photo once and save all its crops into `folder`; why not, if the photo cannot be decoded.

    Decoding errors (a truncated file) are the photo's problem, reported; writing errors (disk full) stop the run.
    `cancel`, checked before every crop, ends the work early (a photo can have thousands of boxes).
    """
    try:
        image = load_image(photo)  # upright and RGB, as detection reads a photo
    except ImageError as e:
        return str(e)
    for crop in crops:
        if cancel is not None and cancel.is_set():
            return None  # the run is unwinding (a signal, a failed write) and reads no result
        save_crop(image, crop.box, folder / crop.path)
    return None


def write_crops(plan: Plan, images_dir: Path, folder: Path, workers: int) -> tuple[list[Crop], Counter]:
    """Cut the crops into `folder`, with the manifest; the crops written, and per photo not decoded its crops lost."""
    by_photo: dict[str, list[Crop]] = {}
    for crop in plan.crops:
        by_photo.setdefault(crop.source, []).append(crop)
    lost = Counter()
    # Threads suffice: Pillow decodes and encodes, and the OS writes files, without holding the GIL; two cut
    # the 325 real photos 1.5x as fast as one on 2 cores (bench/split_bench.py), a process pool no faster.
    pool, cancel = ThreadPoolExecutor(workers), threading.Event()
    try:
        errors = pool.map(lambda name: cut_photo(images_dir / name, by_photo[name], folder, cancel), by_photo)
        for name, error in zip(by_photo, tqdm(errors, total=len(by_photo), unit="photo", desc="cutting",
                                              file=sys.stderr), strict=True):
            if error:
                lost[name] = len(by_photo[name])
                tqdm.write(f"warning: {printable(error)}; its faces are skipped", file=sys.stderr)
    finally:
        # After Ctrl-C, SIGTERM (raised here, in the main thread) or a failed write: no other photo is
        # started, and the threads stop before their next crop, so the wait is one crop long.
        cancel.set()
        pool.shutdown(cancel_futures=True)
    crops = sorted((c for c in plan.crops if c.source not in lost),
                   key=lambda c: (SPLITS.index(c.split), c.label, c.source, c.line))
    with open(folder / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows([c.path, c.split, c.label, c.source, c.line, c.classname, *c.box, *c.face_size]
                         for c in crops)
    return crops, lost


def read_manifest(path: Path, columns: Sequence[str] = ("split", "source")) -> list[dict[str, str]]:
    """The rows of a manifest.csv this module wrote (a row a crop); SplitError if unreadable or without `columns`."""
    if problem := not_a_regular_file(path):
        raise SplitError(f"{path}: {problem}")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SplitError(f"{path}: cannot read the manifest ({error})") from None
    if not rows or not set(columns) <= set(rows[0]):
        raise SplitError(f"{path}: not a split.py manifest (no rows with {', '.join(columns)} columns)")
    return rows


def check_out(out: Path, force: bool, inputs: list[Path]) -> None:
    """Refuse, before any work, a non-empty output folder without --force, and --force over the inputs."""
    if not out.exists():
        ancestor = next(parent for parent in out.absolute().parents if parent.exists())
        if not ancestor.is_dir():
            raise SplitError(f"{out}: cannot create the output folder, {ancestor} is not a folder")
    elif not out.is_dir():
        raise SplitError(f"{out}: output path exists and is not a folder")
    elif any(out.iterdir()):
        if not force:
            raise SplitError(f"{out}: output folder is not empty; use --force to replace it")
        for inside in (*inputs, Path.cwd()):
            if inside.resolve() == out.resolve() or out.resolve() in inside.resolve().parents:
                raise SplitError(f"{out}: refusing to replace an output folder that contains {inside}")


def format_summary(crops: list[Crop], taken: Counter, skipped: Counter, photos_skipped: Counter) -> str:
    """Crops per split and class, rows taken by each class rule, rows skipped and why."""
    table = Counter((c.split, c.label) for c in crops)
    lines = [f"{'split':<8}{'mask':>8}{'no-mask':>9}{'total':>8}{'share':>8}{'mask %':>8}"]
    for split in (*SPLITS, "all"):
        mask, no_mask = (sum(n for (s, label), n in table.items() if label == wanted and split in (s, "all"))
                         for wanted in CLASS_NAMES)
        both = mask + no_mask
        lines.append(f"{split:<8}{mask:>8}{no_mask:>9}{both:>8}{100 * both / max(1, len(crops)):>7.1f}%"
                     f"{100 * mask / max(1, both):>7.1f}%")
    lines += ["", "CSV rows taken by each class rule:", *(f"  {rule:<58}{n:>7}" for rule, n in taken.items())]
    lines += ["", "face rows skipped:"]
    for reason in SKIP_REASONS:
        photos = f" ({photos_skipped[reason]} photos)" if reason in photos_skipped else ""
        lines.append(f"  {reason + photos:<58}{skipped[reason]:>7}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with `ratios` (three fractions) from the three shares; usage errors exit 2."""
    parser = ArgumentParser(prog="split.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", help="folder of the photos named in the CSV")
    parser.add_argument("csv", help="train.csv: name,x1,x2,y1,y2,classname (x1..y2 hold xmin,ymin,xmax,ymax)")
    for split in SPLITS:
        parser.add_argument(split, type=number_in(float, 0),
                            help=f"share of the {split} split (percent, or fraction if the three sum to 1)")
    parser.add_argument("--out", default="data", help="output folder")
    parser.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--seed", type=number_in(int, 0), default=DEFAULT_SEED, help="split seed, a whole number >= 0")
    parser.add_argument("--margin", type=number_in(float, 0, MAX_MARGIN), default=DEFAULT_MARGIN,
                        help=f"widen each box by this fraction of its size on every side, 0 to {MAX_MARGIN:g} "
                             "(the default is the margin detection crops with)")
    parser.add_argument("--min-size", type=number_in(int, 0), default=0,
                        help="skip faces whose shorter side is under this many pixels")
    parser.add_argument("--incorrect", choices=["drop", "mask", "no-mask"], default="drop",
                        help="what face_with_mask_incorrect becomes")
    # Each thread holds one decoded photo (up to 40 megapixels): a few suffice to keep the cores busy.
    parser.add_argument("--workers", type=number_in(int, 1), default=min(4, os.cpu_count() or 1), metavar="N",
                        help="threads cutting photos at once")
    args = parser.parse_args(argv)
    try:
        args.ratios = fractions([args.train, args.valid, args.test])
    except ValueError as e:
        parser.error(str(e))
    return args


def run(args: argparse.Namespace) -> None:
    """Plan, cut into a hidden folder, swap it in as `--out`, print the summary; SplitError or OSError if not."""
    images_dir, out = Path(args.images), Path(args.out)
    if not images_dir.is_dir():
        raise SplitError(f"{images_dir}: images folder not found")
    check_out(out, args.force, [images_dir, Path(args.csv)])
    planned = plan(args)
    # A FileExistsError (an OSError: exit 1) if another program filled `out` while this one worked.
    with atomic_folder(out, replace=args.force) as folder:
        for split, share in zip(SPLITS, args.ratios, strict=True):
            for label in CLASS_NAMES if share > 0 else ():  # every folder of a split with a share, even empty
                (folder / split / label).mkdir(parents=True)
        crops, lost = write_crops(planned, images_dir, folder, args.workers)
    skipped = planned.skipped + Counter({SKIP_UNREADABLE: lost.total()})
    photos_skipped = Counter(planned.problems.values()) + Counter({SKIP_UNREADABLE: len(lost)})
    print(f"{len(crops)} crops from {len({c.source for c in crops})} photos written to {out}/ (seed {args.seed})")
    print(format_summary(crops, planned.taken, skipped, photos_skipped))


def main(argv: Sequence[str] | None = None) -> int:
    """Run split.py with `argv` (default: the command line) and return the exit code.

    Usage errors exit 2 (argparse's SystemExit); bad input or a failed step prints one `error:` line
    and returns 1; Ctrl-C returns 130 and SIGTERM 143 (facemask.cli.stoppable), with nothing left behind:
    the previous output as it was, or, when the signal came as the new one was being swapped in, the new one.
    """
    args = parse_args(argv)
    out = Path(args.out)
    before = _folder_identity(out)
    with stoppable():
        try:
            run(args)
            return 0
        except (SplitError, OSError) as e:
            return fail(e)
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM
            message, code = stop_message(stop)
            after = _folder_identity(out)
            if after is not None and after != before:
                print(f"error: {message} once the new output was complete in {out}/", file=sys.stderr)
            else:
                print(f"error: {message}; no output was written", file=sys.stderr)
            return code


def _folder_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a folder: a folder swapped in by atomic_folder is another one."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


if __name__ == "__main__":
    sys.exit(main())
