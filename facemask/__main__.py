"""`facemask`, the one command: `facemask SUBCOMMAND ...` (or `python -m facemask SUBCOMMAND ...`).

    facemask split sample/images sample/train.csv 80 10 10
    facemask train --data data --out models/
    facemask detect --model models/compact.keras photo.jpg

Each subcommand is the module of the same name, with the same options (`python -m facemask.detect ...`
does what `facemask detect ...` does); `facemask SUBCOMMAND --help` lists them.
"""

import facemask.quiet_start  # noqa: F401  # isort: skip  (first: TensorFlow's start-up lines filtered)
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from facemask.cli import ArgumentParser, invoked_as, run_and_exit

# Each subcommand, the module that runs it (its `main(argv)`) and what it does, for `facemask --help`.
SUBCOMMANDS = {
    "split": ("facemask.split", "Kaggle photos + train.csv to train/valid/test face crops, grouped by photo"),
    "train": ("facemask.train", "train a classifier on the crops, its threshold chosen on validation"),
    "evaluate": ("facemask.evaluate", "score a classifier on crops, or detector + classifier on annotated photos"),
    "predict": ("facemask.predict", "P(mask), P(no-mask) for face crops"),
    "detect": ("facemask.detect", "find the faces of photos and videos, box them green (mask) or red (no mask)"),
    "export": ("facemask.export", "a .keras classifier as ONNX or TensorFlow Lite, checked against Keras"),
    "watch": ("facemask.watch", "a camera watched: people tracked, counted, recorded"),
    "app": ("facemask.app", "the web app: photos, videos and the webcam in a browser"),
    "count": ("facemask.count", "what a data folder holds: images per split and class, as training lists them"),
}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="facemask", description=__doc__.split("\n\n")[0],
                            epilog="`facemask SUBCOMMAND --help` shows a subcommand's options.")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name, (_, summary) in SUBCOMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)  # its own parser reads the rest
    return parser


def command_module(name: str) -> ModuleType:
    """The module of subcommand `name`, imported now: only the chosen one, so `facemask --help` is instant
    (a command module imports TensorFlow or Gradio). For a package (facemask.app), its __main__."""
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return importlib.import_module(module.__name__ + ".__main__") if hasattr(module, "__path__") else module


def dispatch(argv: Sequence[str]) -> int:
    """Run the subcommand `argv` names with the rest of `argv`; its exit status."""
    argv = list(argv)
    build_parser().parse_args(argv[:1])  # --help, or a missing or unknown subcommand: exits
    name = argv[0]
    with invoked_as(f"facemask {name}"):
        return command_module(name).main(argv[1:])


def main(argv: Sequence[str] | None = None) -> None:
    """The `facemask` command's entry point: runs, then exits with the subcommand's status."""
    run_and_exit(lambda: dispatch(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
