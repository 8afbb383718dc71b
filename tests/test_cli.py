"""Every command of the project as a user types it: `--help`, a wrong command line, a missing file.

The convention (facemask.cli): help starts `usage: <the command as typed>`; a wrong command line
exits 2 with the usage and a last line `error: ...`; a runtime error exits 1 with one `error:` line
naming the file; and TensorFlow's start-up lines never reach stderr (facemask.tf_startup).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from facemask.cli import ArgumentParser, run_and_exit
from facemask.tf_startup import shown

ROOT = Path(__file__).resolve().parents[1]
# As a user runs them: without the TF_CPP_MIN_LOG_LEVEL that conftest sets for the tests' own TensorFlow.
ENV = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
TENSORFLOW_NOISE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:|absl|oneDNN|cuda|TensorFlow binary", re.IGNORECASE)

# (how it is run, its usage's prog, arguments that must fail at run time naming {missing}, or None).
# {missing} is a path that does not exist, {file} an ordinary file (not a folder).
COMMANDS = [
    pytest.param(["split.py"], "split.py",
                 ["{missing}", "sample/train.csv", "80", "10", "10", "--out", "{missing}-data"], id="split"),
    pytest.param(["-m", "facemask.train"], "facemask train",
                 ["--arch", "scratch", "--data", "{missing}"], id="train"),
    pytest.param(["-m", "facemask.predict"], "facemask predict", ["--model", "{missing}", "face.jpg"],
                 id="predict"),
    pytest.param(["-m", "facemask.detect"], "facemask detect",
                 ["--model", "{missing}", "photo.jpg", "--out", "{missing}-out"], id="detect"),
    pytest.param(["-m", "facemask.evaluate"], "facemask evaluate", None, id="evaluate"),
    pytest.param(["-m", "facemask.evaluate", "crops"], "facemask evaluate crops",
                 ["--model", "{missing}", "sample/images"], id="evaluate-crops"),
    pytest.param(["-m", "facemask.evaluate", "photos"], "facemask evaluate photos",
                 ["--model", "{missing}", "sample/images", "sample/train.csv"], id="evaluate-photos"),
    pytest.param(["-m", "facemask.app"], "facemask app", ["--model", "{missing}"], id="app"),
    pytest.param(["scripts/make_cartoon_sample.py"], "make_cartoon_sample.py", ["--out", "{file}"], id="sample"),
    pytest.param(["-m", "facemask.count"], "facemask count", ["{missing}"], id="count"),
    pytest.param(["-m", "facemask.watch"], "facemask watch", ["{missing}", "--model", "m.keras"],
                 id="watch"),
]


def start(command: list[str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *command, *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if TENSORFLOW_NOISE.search(line)]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "prog", "failing"), COMMANDS)
def test_help_usage_error_and_runtime_error(command, prog, failing, tmp_path):
    """The three calls run side by side: most commands spend seconds importing TensorFlow or Gradio."""
    places = {"{missing}": str(tmp_path / "missing"), "{file}": str(tmp_path / "file")}
    (tmp_path / "file").write_text("an ordinary file, not a folder\n")
    failing = [places.get(arg, arg.replace("{missing}", places["{missing}"])) for arg in failing or []]
    named = next((arg for arg in failing if arg in places.values()), None)
    calls = {"help": start(command, "--help"), "usage": start(command, "--no-such-flag")}
    if failing:
        calls["runtime"] = start(command, *failing)
    results = {}
    for name, process in calls.items():
        try:
            stdout, stderr = process.communicate(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        results[name] = (process.returncode, stdout, stderr)

    code, stdout, stderr = results["help"]
    assert (code, stderr) == (0, ""), stderr
    assert stdout.startswith(f"usage: {prog} ")

    code, stdout, stderr = results["usage"]
    lines = stderr.splitlines()
    assert code == 2 and stdout == "", stderr
    assert stderr.startswith(f"usage: {prog} ") and lines[-1].startswith("error: "), stderr
    assert [line for line in lines if line.startswith("error")] == lines[-1:] and noise(stderr) == [], stderr

    if failing:
        code, stdout, stderr = results["runtime"]
        assert code == 1, stderr
        assert len(stderr.splitlines()) == 1 and stderr.startswith("error: ") and named in stderr, stderr


# ---------------------------------------------------------------- the shared pieces


def test_help_shows_a_default_only_where_it_means_something():
    parser = ArgumentParser(prog="demo", description="First line.\n  an example, kept as written")
    parser.add_argument("--model", required=True, help="a model file")
    parser.add_argument("--out", default="out", help="output folder")
    parser.add_argument("--threshold", type=float, default=None, help="a cut (default: the detector's own)")
    parser.add_argument("--force", action="store_true", help="replace")
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True, help="cache")
    text = " ".join(parser.format_help().split())
    assert "a model file --out OUT output folder (default: out) --threshold THRESHOLD a cut (default: the " \
           "detector's own) --force replace --cache, --no-cache cache (default: True)" in text
    assert "None" not in text and "False" not in text
    assert "\n  an example, kept as written\n" in parser.format_help()


def test_usage_error_is_one_error_line_and_exit_2(capsys):
    parser = ArgumentParser(prog="demo")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--n", "x"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("usage: demo")
    assert err.splitlines()[-1] == "error: argument --n: invalid int value: 'x'"


def test_ctrl_c_is_one_error_line_and_exit_130(capsys):
    def interrupted() -> int:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exited:
        run_and_exit(interrupted)
    assert exited.value.code == 130 and capsys.readouterr().err == "error: interrupted\n"


IMPORT_LINES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1795851287.000416   12816 port.cc:153] oneDNN custom operations are on.\n",
    b"I0000 00:00:1795851287.000750   12816 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    b"not be used.\n",
    b"2025-09-17 14:44:05.176998: W external/local_xla/xla/some.cc:467] a warning\n",
    b"E0000 00:00:1795851584.541507   14878 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n",
    b"E0000 00:00:1795851584.541507   14878 other.cc:1] a real error\n",
    b"/site-packages/x.py:3: DeprecationWarning: printed by Python meanwhile\n",
]


def test_tensorflow_start_up_lines_are_filtered_by_level():
    error, python = IMPORT_LINES[-2:]
    assert shown(IMPORT_LINES, 1) == [IMPORT_LINES[3], error, python]
    assert shown(IMPORT_LINES, 2) == [error, python]
    assert shown(IMPORT_LINES, 3) == [python]
    # The cuInit error is dropped only when TensorFlow has said there is no CUDA driver.
    assert IMPORT_LINES[4] in shown(IMPORT_LINES[4:], 2)
