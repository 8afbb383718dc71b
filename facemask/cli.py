"""What every command line of the project shares: usage errors as one `error:` line, checked numbers."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error printed as the usage and one line starting with "error:", exit 2."""

    def error(self, message: str) -> None:
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


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
