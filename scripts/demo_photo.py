"""Print the path of a photo from the TEST split of a split.py manifest: one the model never trained on.

    python scripts/demo_photo.py demo/data/manifest.csv sample/images

split.py's manifest.csv has one row per face crop, with the photo it was cut from (`source`) and its
split. Among the test photos present in the images folder, the one shown best off is picked: faces of
both classes first, then the most faces, then the name (so the choice is deterministic). `make demo`
runs detection on it, and scripts/make_pictures.py uses the same choice for the README picture.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facemask.splitting import SplitError, read_manifest  # noqa: E402


class PickError(Exception):
    """No photo can be picked: unreadable manifest, or no test photo in the images folder."""


def faces_of_test_photos(manifest: Path) -> dict[str, list[str]]:
    """The labels of the faces of every test-split photo, by photo name (the manifest's `source`)."""
    try:
        rows = read_manifest(manifest, columns=("split", "source", "label"))
    except SplitError as error:
        raise PickError(str(error)) from None
    faces: dict[str, list[str]] = {}
    for row in rows:
        if row["split"] == "test":
            faces.setdefault(row["source"], []).append(row["label"])
    return faces


def rank_key(name: str, labels: list[str]) -> tuple[int, int, str]:
    """Sort key: both classes first, then more faces, then by name."""
    return (-len(set(labels)), -len(labels), name)


def pick_test_photo(manifest: Path, images: Path) -> Path:
    """The best test-split photo of `manifest` that exists in `images` (see the module docstring)."""
    faces = faces_of_test_photos(manifest)
    present = {name: labels for name, labels in faces.items() if (images / name).is_file()}
    if not present:
        raise PickError(f"none of the {len(faces)} test photos of {manifest} is in {images}")
    best = min(present, key=lambda name: rank_key(name, present[name]))
    return images / best


def is_test_photo(manifest: Path, photo: Path) -> bool:
    """Whether `photo` (by file name) is one of the manifest's test photos."""
    return photo.name in faces_of_test_photos(manifest)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="split.py's manifest.csv (e.g. demo/data/manifest.csv)")
    parser.add_argument("images", type=Path, help="the folder of the photos that were split (e.g. sample/images)")
    args = parser.parse_args(argv)
    try:
        print(pick_test_photo(args.manifest, args.images))
    except PickError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
