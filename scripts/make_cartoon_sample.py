"""Write the generated cartoon sample (facemask.sample.make_sample) to a folder: photos and train.csv.

    python scripts/make_cartoon_sample.py --out generated-sample --photos 80 --seed 42
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from facemask import DEFAULT_SEED  # noqa: E402
from facemask.cli import ArgumentParser, fail, number_in, run_and_exit  # noqa: E402
from facemask.sample import make_sample  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="make_cartoon_sample.py", description=__doc__.split("\n\n")[0])
    # Not "sample": that folder holds the real photos committed with the repository.
    parser.add_argument("--out", type=Path, default=Path("generated-sample"),
                        help="folder to write images/ and train.csv into")
    parser.add_argument("--photos", type=number_in(int, 1), default=80, help="number of photos (2 to 5 faces each)")
    parser.add_argument("--seed", type=number_in(int, 0), default=DEFAULT_SEED,
                        help="a whole number >= 0; the same seed gives the same files")
    args = parser.parse_args(argv)
    try:
        csv_path = make_sample(args.out, args.photos, args.seed)
    except OSError as error:
        return fail(f"{args.out}: cannot write the sample ({error.strerror or error})")
    print(f"wrote {args.photos} photos to {args.out / 'images'} and their boxes to {csv_path}")
    return 0


if __name__ == "__main__":
    run_and_exit(main)
