"""What every command line of the project shares: one parser, one help layout, one meaning per exit status.

`split.py` and every `python -m facemask.*` command build their parser from `ArgumentParser` here, so:

- `--help` shows each option's default the same way, "(default: X)", added by the formatter (a help
  text never writes its own default, except one that is not a value, such as "the detector's own");
  the description keeps the line breaks it was written with;
- `prog` is the short form, `facemask detect`, however the command was started (`python -m
  facemask.detect` does the same); `split.py` for the script, and `facemask split` when the `facemask`
  command (facemask/__main__.py) runs it: within `invoked_as("facemask split")` every parser takes that
  prog, whatever prog its module gives it (its subcommands' parsers extend it);
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
- 130 (INTERRUPTED): stopped by Ctrl+C (SIGINT), `error: interrupted`; 143 (TERMINATED): stopped by
  SIGTERM (`kill`, `timeout`, a service manager), `error: terminated (SIGTERM)`. The web app is the
  exception: for it Ctrl+C and SIGTERM are the normal stop (0).

Stopping, the one mechanism of every command (`run_and_exit` sets it up; `split.py` and the app use it too):

- `stoppable()` turns the first SIGINT or SIGTERM into `Interrupted` (a KeyboardInterrupt), raised in
  the main thread wherever it is, and sets the Event it yields (`STOP`). Threads doing long work
  check that Event between units of work (a crop, a video frame, a training batch), or call
  `raise_if_stopped()`, so the whole process ends within about one unit of work; `finally` blocks
  and `atomic_folder` then remove what was half-written. Later signals do nothing more: they cannot
  cut the clean-up short.
- `deferred_stop()` holds a signal back until its block ends, for steps that must not be cut in two
  (the renames that swap an output folder in, a model file being written); then it raises.
- The Event is cleared when the `stoppable` block ends: join the threads that watch it inside. A
  thread of a server's own (a Gradio worker) turns `Interrupted` into its request's error.
- Code in C (a TensorFlow step, a decoder) cannot be interrupted: the signal takes effect when it
  returns to Python. Before `run_and_exit` starts (while modules are imported) a signal ends the process as
  the system does, with nothing written yet. After a stop, `run_and_exit` exits without the interpreter's
  teardown (`exit_at_once`), which takes seconds with TensorFlow loaded.

    with stoppable() as stop:               # in a command's main thread (run_and_exit does it)
        for frame in frames:
            raise_if_stopped()               # or, in a worker thread: if stop.is_set(): return

Messages: `fail` prints `error: <message>` escaped by `printable` (control characters as `\\n`,
`\\x1b`), so a name read from a CSV or a folder can never forge a line of its own.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn

RUNTIME_ERROR = 1
USAGE_ERROR = 2
INTERRUPTED = 128 + signal.SIGINT  # 130, as a shell reports a process ended by the signal
TERMINATED = 128 + signal.SIGTERM  # 143
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Set by the first SIGINT or SIGTERM while `stoppable` is active: what threads doing long work check.
STOP = threading.Event()
# The command line as the user typed it, while the `facemask` command runs one of its subcommands.
_invoked_as: list[str] = []


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
        if _invoked_as and not str(kwargs.get("prog") or "").startswith(_invoked_as[-1]):
            kwargs["prog"] = _invoked_as[-1]  # a subcommand's parser keeps the prog argparse made it from this
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"error: {message}\n")


@contextlib.contextmanager
def invoked_as(prog: str) -> Iterator[None]:
    """Every `ArgumentParser` made inside the block shows `prog` ("facemask detect") as the command typed."""
    _invoked_as.append(prog)
    try:
        yield
    finally:
        _invoked_as.pop()


def printable(text: object) -> str:
    """`text` with its control characters (and any other unprintable one) escaped as Python writes them,
    `\\n`, `\\x1b`: a name from a CSV or a file system printed in a message can then neither start a
    line of its own (forging one) nor drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def fail(message: object) -> int:
    """Print `error: <message>` (escaped: one line) to stderr and return RUNTIME_ERROR, for `return fail(...)`."""
    print(f"error: {printable(message)}", file=sys.stderr, flush=True)
    return RUNTIME_ERROR


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: unwind (running the clean-ups on the way) and exit 130 or 143."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return "terminated (SIGTERM)" if self.signum == signal.SIGTERM else "interrupted"


class _Stopping:
    """The state `stoppable` keeps: which signal came, whether it was raised yet, deferral depth."""

    active = 0  # nested stoppable() blocks
    deferred = 0  # nested deferred_stop() blocks
    signum = 0
    raised = False


def _on_signal(signum: int, frame: object) -> None:
    if STOP.is_set():
        return  # a second signal: the first is being handled, and the clean-up must not be cut short
    _Stopping.signum = signum
    STOP.set()
    if not _Stopping.deferred:
        _Stopping.raised = True
        raise Interrupted(signum)


@contextlib.contextmanager
def stoppable() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM become `Interrupted` in the main thread and set the yielded Event (see above).

    Re-entrant; outside the main thread (where Python cannot set handlers) it only yields the Event.
    The previous handlers come back at the end, and the Event is cleared: join the threads that
    watch it inside the block.
    """
    if _Stopping.active or threading.current_thread() is not threading.main_thread():
        yield STOP
        return
    STOP.clear()
    _Stopping.signum, _Stopping.raised = 0, False
    previous = {signum: signal.signal(signum, _on_signal) for signum in STOP_SIGNALS}
    _Stopping.active += 1
    try:
        yield STOP
    finally:
        _Stopping.active -= 1
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        STOP.clear()  # a later stoppable block, or code run outside one, starts afresh


def raise_if_stopped() -> None:
    """Raise `Interrupted` if a stop signal came: the check between units of work, in any thread."""
    if STOP.is_set():
        raise Interrupted(_Stopping.signum or signal.SIGINT)


@contextlib.contextmanager
def deferred_stop() -> Iterator[None]:
    """Run the block whole: a stop signal arriving inside it is raised (once) when it ends.

    For steps that must not be cut in two, in the main thread: the renames that swap a folder in, the
    removal of a partial folder, a file being written in place.
    """
    _Stopping.deferred += 1
    try:
        yield
    finally:
        _Stopping.deferred -= 1
    if not _Stopping.deferred and STOP.is_set() and not _Stopping.raised:
        _Stopping.raised = True
        raise Interrupted(_Stopping.signum)


def stop_message(stop: KeyboardInterrupt) -> tuple[str, int]:
    """What to print after `error: ` and the exit status, for Ctrl+C or an `Interrupted`."""
    return (str(stop), stop.exit_code) if isinstance(stop, Interrupted) else ("interrupted", INTERRUPTED)


def run_and_exit(main: Callable[[], int | None]) -> NoReturn:
    """`sys.exit(main())` for a command's `__main__`, stoppable: SIGINT prints `error: interrupted` and
    exits 130, SIGTERM `error: terminated (SIGTERM)` and 143."""
    with stoppable():
        try:
            code = main()
            if STOP.is_set() and not _Stopping.raised:  # held back by a deferred block that then failed
                raise Interrupted(_Stopping.signum)
        except KeyboardInterrupt as stop:
            message, code = stop_message(stop)
            fail(message)
        stopped = STOP.is_set()
    if stopped:
        exit_at_once(code)
    sys.exit(code)


def exit_at_once(code: int | None) -> NoReturn:
    """Exit now that a stopped command has cleaned up, without the interpreter's teardown: collecting
    TensorFlow's and Gradio's objects one by one takes seconds (bench/README.md, Stopping).
    The atexit functions still run and the output is flushed; no file is left open for writing."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code if isinstance(code, int) else RUNTIME_ERROR)


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
