"""TensorFlow's start-up lines kept off the terminal, so that a command's first line is its own.

Importing TensorFlow 2.21 on a CPU machine prints, twice (two of its libraries load their own copy
of absl logging):

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1795851287.000416   12816 port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:1795851287.000750   12816 cudart_stub.cc:31] Could not find cuda drivers on your machine, ...
    I0000 00:00:1795851287.114728   12816 cpu_feature_guard.cc:227] This TensorFlow binary is optimized ...

and, at the first use of a device (loading a model), on a machine without an NVIDIA driver:

    E0000 00:00:1795851584.541507   14878 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

`TF_CPP_MIN_LOG_LEVEL=2` (set here unless the user set it: 0 shows everything, 1 hides INFO, 2 also
WARNING, 3 also ERROR) hides cpu_feature_guard's lines, and every later INFO and WARNING line. The
others come from the libraries' static initialisers, before TensorFlow reads the variable. So the
first import of `tensorflow` (directly or through keras) runs with file descriptor 2 caught in a
temporary file, and also looks for devices meanwhile (which is when CUDA is tried); then what was
caught is written back to stderr without the log lines the level hides, nor absl's "before
absl::InitializeLog()" notice, nor the cuInit error when TensorFlow has just said at INFO level that
there is no CUDA driver (the same fact, told twice). Other errors, and anything else printed
meanwhile, still show.

TF_ENABLE_ONEDNN_OPTS is left alone: it would silence the oneDNN line but changes the numerics.

The commands get this from an import hook (`silence_tensorflow_start_up`), installed by the first
import line of every command module, `import facemask.quiet_start`: never by `import facemask` or a
library module, which leave the import system and file descriptor 2 alone. A notebook calls
`import_tensorflow_quietly()` in its import cell, before `import keras`: ipykernel forwards file
descriptor 2 to the cell's output, so the same filter keeps the lines out of it.
It also drops TensorFlow's warning of "excessive retracing" when the function it names is one of
Keras' own train, test or predict steps (`KerasStepsRetracing`): Keras gives those steps one code
object for every model, TensorFlow counts their traces together, and a notebook that trains and
scores several models on a small subset (a few calls per model) crosses its threshold of five traces
in ten calls, although each model is traced only as often as it must be.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from types import ModuleType

# absl's "I0000 00:00:1795851287.000416   12816 port.cc:153] " and TensorFlow's own
# "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] ".
LOG_LINE = re.compile(rb"(?:([IWEF])\d{4} \d\d:\d\d:[\d.]+ +\d+ |\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) )\S+:\d+\] ")
SEVERITIES = b"IWEF"  # the order of TF_CPP_MIN_LOG_LEVEL's 0 to 3
ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
NO_CUDA_DRIVER = b"] Could not find cuda drivers on your machine"
CUINIT_FAILED = b"] failed call to cuInit:"


def min_log_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def shown(lines: list[bytes], level: int) -> list[bytes]:
    """The lines TensorFlow's import printed that are shown at TF_CPP_MIN_LOG_LEVEL `level` (1 or more)."""
    no_cuda_driver = any(NO_CUDA_DRIVER in line for line in lines)
    kept = []
    for line in lines:
        match = LOG_LINE.match(line)
        if match is None:
            if not line.startswith(ABSL_NOTICE):
                kept.append(line)
        elif SEVERITIES.index(match[1] or match[2]) >= level and not (no_cuda_driver and CUINIT_FAILED in line):
            kept.append(line)
    return kept


@contextmanager
def stderr_filtered(level: int) -> Iterator[None]:
    """Catch file descriptor 2 meanwhile; then write back the lines `shown` at `level`."""
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no stderr to filter
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            try:
                if sys.stderr is not None:
                    sys.stderr.flush()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            caught.seek(0)
            kept = shown(caught.read().splitlines(keepends=True), level)
            if kept:
                with open(2, "wb", closefd=False) as stderr:
                    stderr.writelines(kept)


class QuietTensorFlowImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """On sys.meta_path until `tensorflow` is imported: finds it as usual, and loads it in `stderr_filtered`."""

    def __init__(self) -> None:
        self.loader: importlib.abc.Loader | None = None
        self.searching = False

    def find_spec(self, name: str, path=None, target=None):
        if name != "tensorflow" or self.searching or self.loader is not None:
            return None
        self.searching = True
        try:
            spec = importlib.util.find_spec(name)  # the other finders: where TensorFlow really is
        finally:
            self.searching = False
        if spec is None or spec.loader is None:
            return None
        self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # the real loader, for whoever asks later
        sys.meta_path.remove(self)

        def load() -> ModuleType:
            self.loader.exec_module(module)
            return module

        load_filtered(load)


def load_filtered(load: Callable[[], ModuleType]) -> ModuleType:
    """Run `load` (TensorFlow's import) with stderr filtered at TF_CPP_MIN_LOG_LEVEL, unless that is 0."""
    level = min_log_level()
    with stderr_filtered(level) if level >= 1 else nullcontext():
        module = load()
        if level >= 1:
            # Devices are looked for once, and CUDA tried, on first use: now, while stderr is filtered.
            # Listing them leaves every device setting (visible devices, threads) still open.
            with suppress(Exception):  # a TensorFlow without tf.config: its first real use will say so
                module.config.list_physical_devices()
    return module


def silence_tensorflow_start_up() -> None:
    """Set TF_CPP_MIN_LOG_LEVEL=2 unless set, and filter TensorFlow's import; call before it is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not any(isinstance(f, QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlowImport())


class KerasStepsRetracing(logging.Filter):
    """Drops TensorFlow's "excessive retracing" warning when it is about Keras' own steps (see above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and "<function TensorFlowTrainer." in message)


def import_tensorflow_quietly() -> ModuleType:
    """Import TensorFlow now, TF_CPP_MIN_LOG_LEVEL=2 unless set and its start-up lines filtered, and
    keep the retracing warning about Keras' own steps out of its log: for a notebook's import cell,
    before keras (which imports TensorFlow) is imported. Returns the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logger = logging.getLogger("tensorflow")  # TensorFlow's Python log (tf.get_logger())
    if not any(isinstance(f, KerasStepsRetracing) for f in logger.filters):
        logger.addFilter(KerasStepsRetracing())
    if "tensorflow" in sys.modules:  # too late to filter its start-up lines: they are out already
        return sys.modules["tensorflow"]
    return load_filtered(lambda: importlib.import_module("tensorflow"))
