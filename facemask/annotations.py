"""The one reader of the Kaggle "Face Mask Detection" train.csv (the wobot layout) and its class rules.

- The header says `name,x1,x2,y1,y2,classname` but the number columns hold xmin, ymin, xmax, ymax (the
  Kaggle trap). Columns are found by name. Object classes (hat, eyeglasses, ...) are not faces: ignored.
- Splitting (facemask.splitting) reads its face rows with `read_rows` and `apply_class_rules`; the photo
  evaluation reads its true faces with `read_truth`, a mask worn incorrectly counted as no-mask.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from facemask import not_a_regular_file
from facemask.metrics import TrueFace

# Header name -> what the column really holds (the Kaggle trap: x2 is ymin, y1 is xmax).
COORDINATE_COLUMNS = {"x1": "xmin", "x2": "ymin", "y1": "xmax", "y2": "ymax"}
MASK_CLASS, NO_MASK_CLASS, INCORRECT_CLASS = "face_with_mask", "face_no_mask", "face_with_mask_incorrect"
# Coordinates beyond a billion pixels are typos (photos are capped at 40 megapixels); bounding them
# keeps every sum and product of the box arithmetic a finite float.
MAX_COORDINATE = 1e9
# How the evaluation counts a mask under the nose: it does not protect.
INCORRECT_AS = "no-mask"


class AnnotationError(Exception):
    """An unreadable or malformed CSV; the message names the file (and the line and column when it can)."""


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


def check_name(name: str) -> str | None:
    """Why a photo name is refused (empty, absolute, or climbing out of the images folder), or None."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if not name:
        return "is empty"
    if posix.is_absolute() or PureWindowsPath(name).drive:
        return f"{name!r} is an absolute path; names must be relative to the images folder"
    return f"{name!r} climbs out of the images folder" if ".." in posix.parts else None


def parse_row(csv_path: Path, line: int, fields: list[str], columns: dict[str, int]) -> BoxRow:
    """One data row; an AnnotationError names the file, the line and the column of what is wrong."""
    if len(fields) <= max(columns.values()):
        raise AnnotationError(
            f"{csv_path}: line {line}: {len(fields)} fields, the header has {max(columns.values()) + 1}")
    name = fields[columns["name"]].strip()
    if problem := check_name(name):
        raise AnnotationError(f"{csv_path}: line {line}, column 'name': {problem}")
    coordinates = {}
    for header, meaning in COORDINATE_COLUMNS.items():
        text = fields[columns[header]].strip()
        where = f"{csv_path}: line {line}, column {header!r} ({meaning}): {text!r}"
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise AnnotationError(f"{where} is not a number")
        if abs(value) > MAX_COORDINATE:
            raise AnnotationError(f"{where} is not a pixel coordinate (beyond ±{MAX_COORDINATE:g})")
        coordinates[meaning] = value
    # One spelling per photo, or its faces could land in two splits: `./x.jpg` is `x.jpg`, `a//x.jpg` is `a/x.jpg`.
    name = PurePosixPath(name).as_posix()
    return BoxRow(line=line, name=name, classname=fields[columns["classname"]].strip(), **coordinates)


def read_rows(csv_path: Path) -> list[BoxRow]:
    """Every data row of a Kaggle-layout CSV; raises AnnotationError naming the line and column of a bad one."""
    wanted = ("name", "classname", *COORDINATE_COLUMNS)
    if problem := not_a_regular_file(csv_path):
        raise AnnotationError(f"{csv_path}: {problem}")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise AnnotationError(
                    f"{csv_path}: the file is empty (expected the header name,x1,x2,y1,y2,classname)")
            found = {title.strip().lower(): i for i, title in enumerate(header)}
            if missing := [c for c in wanted if c not in found]:
                raise AnnotationError(f"{csv_path}: line 1: missing column(s) {', '.join(missing)} "
                                      f"(the header is {','.join(header)})")
            columns = {c: found[c] for c in wanted}
            return [parse_row(csv_path, reader.line_num, fields, columns)
                    for fields in reader if any(field.strip() for field in fields)]  # blank lines skipped
    except FileNotFoundError:
        raise AnnotationError(f"{csv_path}: CSV file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise AnnotationError(f"{csv_path}: cannot read the CSV: {e}") from None


def apply_class_rules(rows: list[BoxRow], incorrect: str) -> tuple[list[tuple[BoxRow, str]], Counter]:
    """The face rows with their label, and how many rows each class rule took (every rule, in this order).

    `incorrect` is what face_with_mask_incorrect becomes: "mask", "no-mask" or "drop".
    """
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


def read_truth(csv_path: Path) -> dict[str, list[TrueFace]]:
    """Per photo named in the CSV with at least one face row: its faces, incorrect masks as no-mask."""
    faces, _ = apply_class_rules(read_rows(csv_path), INCORRECT_AS)
    truth: dict[str, list[TrueFace]] = {}
    for row, label in faces:
        truth.setdefault(row.name, []).append(TrueFace((row.xmin, row.ymin, row.xmax, row.ymax), label, row.classname))
    if not truth:
        raise AnnotationError(f"{csv_path}: no face rows ({MASK_CLASS}, {NO_MASK_CLASS}, {INCORRECT_CLASS})")
    return truth
