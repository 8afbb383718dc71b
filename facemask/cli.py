"""What every command line of the project shares: one parser, one help layout, one meaning per exit status.

`split.py` and every `python -m facemask.*` command build their parser from `ArgumentParser` here, so:

- `--help` shows each option's default the same way, "(default: X)", added by the formatter (a help
  text never writes its own default, except one that is not a value, such as "the detector's own");
  the description keeps the line breaks it was written with;
- `prog` is what the user typed: `python -m facemask.detect`, `split.py`;
- the same idea has the same flag everywhere: `--model FILE` is always a saved model file (the
  architecture to train is `--arch`), `--min-size N` ignores faces smaller than N px, `--seed`
  defaults to `facemask.DEFAULT_SEED`, `--threshold` is the classifier's decision threshold on
  P(no-mask) and `--face-threshold` the face detector's confidence cutoff (`add_threshold_options`).

Exit status, the same for every command:

- 0: done.
- 2 (USAGE_ERROR): the command line is wrong, found without reading any file: an unknown flag, a missing
  argument, a number out of range, conflicting options. The usage and one line starting with
  `error:` go to stderr, and nothing has been loaded or written.
- 1 (RUNTIME_ERROR): the command line was fine but the work failed: a file or folder missing,
  unreadable, corrupt or of the wrong kind (a missing model file included: whether a file exists is
  known only by looking), an output folder that cannot be written, a port already taken. One line
  `error: <file>: <what>` per problem; a command that works through several files keeps going past
  an unreadable one and exits 1 at the end.
- 130 (INTERRUPTED): stopped by Ctrl+C (`run` prints `error: interrupted`); SIGTERM ends a command
  as the system does (143), except the web app, for which Ctrl+C and SIGTERM are the normal stop (0).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn

RUNTIME_ERROR = 1
USAGE_ERROR = 2
INTERRUPTED = 130


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown as "(default: X)" where a default means something; descriptions keep their lines.

    argparse's own defaults formatter also writes "(default: None)" on an option without a default,
    "(default: False)" on a switch, and a default on a required option that never uses it; not here.
    A help text that says "(default: ...)" itself (a default that is not a value) is left as it is.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        switch = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)  # store_true...
        if action.default is None or action.required or switch or "(default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with `HelpFormatter`, and a usage error printed as the usage and one `error:` line, exit 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"error: {message}\n")


def fail(message: object) -> int:
    """Print `error: <message>` to stderr and return RUNTIME_ERROR, for `return fail(...)` in a main()."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return RUNTIME_ERROR


def run(main: Callable[[], int | None]) -> NoReturn:
    """`sys.exit(main())` for a command's `__main__`, with Ctrl+C as `error: interrupted` and exit 130."""
    try:
        code = main()
    except KeyboardInterrupt:
        fail("interrupted")
        code = INTERRUPTED
    sys.exit(code)


def number_in(kind: type, low: float, high: float = math.inf, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number from `low` (or, with `above`, over `low`) to `high`."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not ((value > low if above else value >= low) and value <= high and math.isfinite(value)):
            if above:
                span = f"above {low:g}"
            else:
                span = f"from {low:g} to {high:g}" if math.isfinite(high) else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text!r} must be a number {span}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid int value" messages
    return parse


def add_threshold_options(parser: argparse.ArgumentParser, face: bool = True) -> None:
    """The two thresholds, named alike in every command: `--threshold`, the classifier's decision threshold
    on P(no-mask) (None: the model's own), and with `face`, `--face-threshold`, the face detector's
    confidence from which a face is kept (None: the detector's own)."""
    if face:
        parser.add_argument("--face-threshold", type=number_in(float, 0, 1), default=None,
                            help="face detector confidence from which a face is kept, 0 to 1 (default: the "
                                 "detector's own)")
    parser.add_argument("--threshold", type=number_in(float, 0, 1), default=None,
                        help="decision threshold: a face is no-mask (boxed red) when its P(no-mask) is at least "
                             "this, 0 to 1 (default: the model's own, chosen on validation; 0.5 for older models)")
