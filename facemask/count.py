"""The count command: images per split and class of a data folder, as training lists them.

    facemask count data        # a data folder with train/, valid/ and test/, as split.py writes it
"""

from __future__ import annotations

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
from collections.abc import Sequence
from pathlib import Path

from facemask.cli import ArgumentParser, fail, run_and_exit
from facemask.data import DataError, check_data_dir, count_images


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="facemask count", description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a data folder with train/, valid/ and test/, as split.py writes it")
    args = parser.parse_args(argv)
    try:
        check_data_dir(args.data)
        table = count_images(args.data)
    except (DataError, OSError) as error:
        return fail(error)
    print(table.to_string())
    return 0


if __name__ == "__main__":
    run_and_exit(main)
