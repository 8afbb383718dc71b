"""Pick the embedded real sample: about 60 CC0 photos of the shared Kaggle-format set, into sample/.

    python scripts/pick_sample.py                      # ../shared/datasets/kaggle-format -> sample/
    python scripts/pick_sample.py --source DIR --out DIR --photos 60 --seed 0

The photos are "Face Mask Detection" by andrewmvd on Kaggle, published as CC0 (public domain), in
the wobot CSV layout (header `name,x1,x2,y1,y2,classname`, the four numbers being xmin, ymin,
xmax, ymax). The pick is deterministic (same source, seed and count: same files):

1. Candidates are photos of at most MAX_FILE_BYTES with at least one mask or no-mask face; files
   are copied byte for byte, never recompressed, so small files are what keeps the sample small.
2. In a seeded random order, each next photo is the first one that pulls the running mask share
   (mask / (mask + no-mask) faces, `face_with_mask_incorrect` aside as split.py drops it by
   default) towards the full set's: one with a no-mask face while the share is above the target,
   one without otherwise. This keeps the share close and spreads the no-mask faces over many photos,
   so that split.py's stratified split puts no-mask crops in train, valid and test.

Every row of a picked photo is kept, in the source file's order.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facemask.annotations import AnnotationError, BoxRow, read_rows  # noqa: E402
from facemask.cli import ArgumentParser, fail, number_in  # noqa: E402

SAMPLE_SEED = 0
LABELS = {"face_with_mask": "mask", "face_no_mask": "no-mask", "face_with_mask_incorrect": "incorrect"}
MAX_FILE_BYTES = 150_000  # "well under 300 KB": all the set's JPEGs and its smallest PNGs
MAX_TOTAL_BYTES = 5_000_000


def faces_per_photo(rows: list[BoxRow]) -> dict[str, Counter]:
    """Photo name -> counts of mask, no-mask and incorrect faces (object classes ignored)."""
    faces: dict[str, Counter] = {}
    for row in rows:
        counts = faces.setdefault(row.name, Counter())
        if row.classname in LABELS:
            counts[LABELS[row.classname]] += 1
    return faces


def mask_share(counts: Counter) -> float:
    """mask / (mask + no-mask); 1.0 for no faces, so an empty pick asks for a no-mask photo first."""
    faces = counts["mask"] + counts["no-mask"]
    return counts["mask"] / faces if faces else 1.0


def pick_photos(faces: dict[str, Counter], sizes: dict[str, int], count: int, seed: int) -> list[str]:
    """`count` photo names, steering the running mask share towards the full set's (see the docstring)."""
    target = mask_share(sum(faces.values(), Counter()))
    candidates = sorted(name for name, counts in faces.items()
                        if sizes[name] <= MAX_FILE_BYTES and counts["mask"] + counts["no-mask"] > 0)
    order = [candidates[i] for i in np.random.default_rng(seed).permutation(len(candidates))]
    picked: list[str] = []
    totals: Counter = Counter()
    while len(picked) < count:
        want_no_mask = mask_share(totals) > target
        remaining = [name for name in order if name not in picked]
        if not remaining:
            raise ValueError(f"only {len(picked)} photos are small enough (at most {MAX_FILE_BYTES} bytes)")
        # Fall back to any photo when one kind has run out, rather than stop short.
        name = next((n for n in remaining if (faces[n]["no-mask"] > 0) == want_no_mask), remaining[0])
        picked.append(name)
        totals += faces[name]
    return sorted(picked)


def write_readme(out: Path, picked: list[str], faces: dict[str, Counter], total_bytes: int, count: int,
                 seed: int) -> None:
    """sample/README.md: source, licence, how the photos were picked, and what they hold."""
    counts = sum((faces[name] for name in picked), Counter())
    full = sum(faces.values(), Counter())
    kinds = Counter(Path(name).suffix.lstrip(".") for name in picked)
    formats = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))

    def row(what: str, c: Counter) -> str:
        return f"| {what} | {c['mask']} | {c['no-mask']} | {c['incorrect']} | {mask_share(c):.3f} |"

    out.joinpath("README.md").write_text(f"""# The embedded sample: {len(picked)} real photos

- **Source**: "Face Mask Detection" by andrewmvd on Kaggle
  (https://www.kaggle.com/datasets/andrewmvd/face-mask-detection), 853 photos with face boxes.
- **Licence**: CC0 1.0, public domain (https://creativecommons.org/publicdomain/zero/1.0/): no
  rights reserved; we credit the source anyway.

These are {len(picked)} of those photos, unchanged (byte-identical copies), in `images/` ({formats},
{total_bytes / 1e6:.1f} MB in all), and their face boxes in `train.csv`, in the layout of the Kaggle wobot "Face
Mask Detection" set that `split.py` reads: header `name,x1,x2,y1,y2,classname`, where the four
numbers are xmin, ymin, xmax, ymax (the header's names are misleading). The boxes were converted
from the original PASCAL VOC files: `with_mask` is `face_with_mask`, `without_mask` is
`face_no_mask` and `mask_weared_incorrect` is `face_with_mask_incorrect`.

| faces | mask | no-mask | mask worn incorrectly | mask share (mask / (mask + no-mask)) |
| --- | --- | --- | --- | --- |
{row("this sample", counts)}
{row(f"the {len(faces)} photos it was picked from", full)}

Faces are small (many under 30 px wide), as in the whole set. It is the data that the notebook, the
demo and the tests use when no other data is given; it is far too small to train a good model.

## How it was picked

`python scripts/pick_sample.py --photos {count} --seed {seed}` (deterministic), from the {len(faces)} photos
of `../shared/datasets/kaggle-format` (a part of the Kaggle set, converted to the layout above).
Among the photos of at most {MAX_FILE_BYTES // 1000} KB (files are copied, never recompressed) that hold at
least one mask or no-mask face, in a seeded random order, each next photo is the first that pulls
the running mask share towards the full set's. That keeps the share close and spreads the no-mask
faces over many photos, so that `split.py ... 70 15 15` puts no-mask crops in every split.
""")


def pick_sample(source: Path, out: Path, count: int = 60, seed: int = SAMPLE_SEED) -> list[str]:
    """Copy the picked photos and their rows into out/images and out/train.csv; returns their names."""
    csv_path = source / "train.csv"
    rows = read_rows(csv_path)
    faces = faces_per_photo(rows)
    sizes = {name: (source / "images" / name).stat().st_size for name in faces}
    picked = pick_photos(faces, sizes, count, seed)
    total_bytes = sum(sizes[name] for name in picked)
    if total_bytes > MAX_TOTAL_BYTES:
        raise ValueError(f"the pick holds {total_bytes} bytes, more than {MAX_TOTAL_BYTES}")
    images = out / "images"
    shutil.rmtree(images, ignore_errors=True)  # a re-pick replaces the old photos, never adds to them
    images.mkdir(parents=True)
    for name in picked:
        shutil.copyfile(source / "images" / name, images / name)
    chosen = set(picked)
    # The picked photos' lines copied as they are, the header first (a row's `line` is its line in the file).
    lines = csv_path.read_text(encoding="utf-8-sig").splitlines()
    kept = [lines[row.line - 1] for row in rows if row.name in chosen]
    (out / "train.csv").write_text("\n".join([lines[0], *kept]) + "\n", encoding="utf-8")
    write_readme(out, picked, faces, total_bytes, count, seed)
    return picked


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="scripts/pick_sample.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "datasets" / "kaggle-format",
                        help="folder with images/ and train.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "sample", help="where to write")
    parser.add_argument("--photos", type=number_in(int, 1), default=60, help="how many photos to pick")
    # Not DEFAULT_SEED: 0 is the seed the committed sample/ was picked with, so a re-run gives the same files.
    parser.add_argument("--seed", type=number_in(int, 0), default=SAMPLE_SEED, help="seed of the pick")
    args = parser.parse_args(argv)
    if not (args.source / "train.csv").is_file():
        return fail(f"{args.source / 'train.csv'}: not found")
    try:
        picked = pick_sample(args.source, args.out, args.photos, args.seed)
    except AnnotationError as error:
        return fail(error)
    print(f"{len(picked)} photos written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
