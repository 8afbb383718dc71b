"""Cut the faces of the Kaggle "Face Mask Detection" photos into train/valid/test crop folders.

The split command. `split.py IMAGES CSV 80 10 10` (or `python -m facemask.split`) writes PNG crops into
`{train,valid,test}/{mask,no-mask}/`, `manifest.csv` and `split.json`, grouped by photo, and prints crops
per split and class, the rows each class rule took and the face rows skipped. The work is
facemask.splitting's; the CSV's layout and class rules are facemask.annotations'.
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from facemask import DEFAULT_MARGIN, DEFAULT_SEED, MAX_MARGIN, SPLITS
from facemask.annotations import AnnotationError
from facemask.cli import ArgumentParser, fail, number_in, stop_message, stoppable
from facemask.splitting import DEFAULT_WORKERS, SplitError, format_summary, fractions, split_photos


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
    parser.add_argument("--workers", type=number_in(int, 1), default=DEFAULT_WORKERS, metavar="N",
                        help="threads cutting photos at once")
    args = parser.parse_args(argv)
    try:
        args.ratios = fractions([args.train, args.valid, args.test])
    except ValueError as e:
        parser.error(str(e))
    return args


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
            result = split_photos(Path(args.images), Path(args.csv), out, args.ratios, force=args.force,
                                  incorrect=args.incorrect, margin=args.margin, min_size=args.min_size,
                                  seed=args.seed, workers=args.workers)
        except (SplitError, AnnotationError, OSError) as e:
            return fail(e)
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM
            message, code = stop_message(stop)
            after = _folder_identity(out)
            if after is not None and after != before:
                print(f"error: {message} once the new output was complete in {out}/", file=sys.stderr)
            else:
                print(f"error: {message}; no output was written", file=sys.stderr)
            return code
    print(format_summary(result, out, args.seed))
    return 0


def _folder_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a folder: a folder swapped in by atomic_folder is another one."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


if __name__ == "__main__":
    sys.exit(main())
