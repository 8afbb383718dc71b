"""Every supported Python installs the project and runs it, and every place that names them agrees.

The one list is pyproject's [tool.facemask] pythons. For each version found on the machine, the slow test
makes a fresh venv, `pip install`s a clean copy of the project (as a user's `pip install .` would) and runs
`facemask SUB --help` for every subcommand, then split -> train (one epoch) -> evaluate -> detect with the
`facemask` command on the committed sample from a folder outside the checkout, so that the installed package is
what runs. The fast tests keep requires-python, the "Python 3.A-3.B" of the
README, requirements.txt and the notebook (if it states one), the requirement markers, ruff's target and the
Makefile in line with the list.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import PYPROJECT, ROOT, copy_package_source, parse_requirements
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from facemask import CLASS_NAMES
from facemask.__main__ import SUBCOMMANDS

PYTHONS: list[str] = PYPROJECT["tool"]["facemask"]["pythons"]
SUPPORTED = f"Python {PYTHONS[0]}-{PYTHONS[-1]}"
RANGE_PHRASE = re.compile(r"Python (3\.\d+) ?[-–] ?(3\.\d+)")  # an en dash or spaces would be the same claim
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
# A venv's python must import the venv's packages, not whatever this process was told to import.
UNSET = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")


# ---------------------------------------------------------------- finding and running an interpreter


def probe(python: str) -> tuple[str, bool] | None:
    """(its "3.X", whether it has ensurepip) for an interpreter that starts, else None."""
    code = "import sys, importlib.util as u; print('%d.%d' % sys.version_info[:2], bool(u.find_spec('ensurepip')))"
    try:
        result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    version, has_ensurepip = result.stdout.split()
    return version, has_ensurepip == "True"


def find_python(version: str) -> tuple[str, bool] | None:
    """(path, has ensurepip) of Python `version`: python3.X on the PATH, else pyenv's newest build of it.

    Each candidate is run, as a pyenv shim on the PATH fails for every version pyenv has not selected.
    """
    builds = [path for path in PYENV_VERSIONS.glob(f"{version}.*/bin/python")
              if re.fullmatch(rf"{re.escape(version)}\.\d+", path.parents[1].name)]  # not 3.13.0t, 3.13-dev
    builds.sort(key=lambda path: int(path.parents[1].name.rpartition(".")[2]), reverse=True)
    for candidate in [shutil.which(f"python{version}"), *map(str, builds)]:
        found = candidate and probe(candidate)
        if found and found[0] == version:
            return candidate, found[1]
    return None


def default_arch() -> str:
    """The network `python -m facemask.train` trains when no --arch is given."""
    from facemask.config import TrainConfig

    return TrainConfig().arch


def run(command: list, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `command` in `cwd`; fail the test with its last lines of output unless it exits 0.

    Each step's time is printed (pytest shows it with a failure, or with -rP) to tell where CI's time goes.
    """
    env = {name: value for name, value in os.environ.items() if name not in UNSET}
    start = time.monotonic()
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    print(f"{time.monotonic() - start:6.1f} s  {' '.join(map(str, command[1:4]))}")
    assert result.returncode == 0, (f"{' '.join(map(str, command))} exited {result.returncode}:\n"
                                    f"{(result.stdout + result.stderr)[-4000:]}")
    return result


# ---------------------------------------------------------------- the smoke run, per version


# absl's notice and TensorFlow's C++ log lines, which the `facemask` command keeps off its terminal.
TENSORFLOW_LOG_LINE = re.compile(r"absl::InitializeLog|^[IWEF]\d{4} \d\d:\d\d:", re.M)


def check_every_subcommands_help(facemask: Path, cwd: Path) -> None:
    """`facemask SUB --help` answers, as `facemask SUB`, for every subcommand (side by side: each imports
    its module, TensorFlow or Gradio with it), its stderr free of TensorFlow's start-up lines; as a user runs it,
    without the TF_CPP_MIN_LOG_LEVEL conftest sets."""
    env = {name: value for name, value in os.environ.items() if name not in (*UNSET, "TF_CPP_MIN_LOG_LEVEL")}
    calls = {name: subprocess.Popen([facemask, name, "--help"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name in SUBCOMMANDS}
    for name, process in calls.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0 and stdout.startswith(f"usage: facemask {name} "), (name, stderr[-2000:])
        assert not TENSORFLOW_LOG_LINE.search(stderr), (name, stderr[-2000:])  # the filter is on (quiet_start)


@pytest.mark.slow
@pytest.mark.parametrize("version", PYTHONS)
def test_installs_and_runs_the_commands(version, tmp_path, real_sample_dir):
    found = find_python(version)
    if found is None:
        pytest.skip(f"Python {version} not found (python{version} on the PATH or {PYENV_VERSIONS}/{version}.*)")
    python, has_ensurepip = found
    if not has_ensurepip:  # `make test` installs it where apt-get can
        pytest.skip(f"Python {version} ({python}) has no ensurepip to make a venv with (python{version}-venv)")
    venv = tmp_path / "venv"
    run([python, "-m", "venv", venv], tmp_path)
    venv_python = venv / "bin" / "python"
    # The pip that comes with this Python's venv, as a user gets it; a long timeout for a cold download cache.
    run([venv_python, "-m", "pip", "install", "--quiet", copy_package_source(tmp_path / "src")], tmp_path,
        timeout=3600)

    work = tmp_path / "work"  # outside the checkout, so `import facemask` can only find the installed package
    work.mkdir()
    imported = run([venv_python, "-c", "import facemask; print(facemask.__file__)"], work).stdout.strip()
    assert Path(imported).is_relative_to(venv), imported
    facemask = venv / "bin" / "facemask"  # the one command, [project.scripts]
    check_every_subcommands_help(facemask, work)

    images, labels = real_sample_dir / "images", real_sample_dir / "train.csv"
    run([facemask, "split", images, labels, "70", "15", "15", "--out", "D"], work)
    test_crops = sorted((work / "D" / "test").glob("*/*"))
    assert {crop.parent.name for crop in test_crops} == set(CLASS_NAMES)

    run([facemask, "train", "--data", "D", "--epochs", "1", "--subset", "0.3",
         "--out", "M", "--reports", "R"], work)
    arch = default_arch()  # what `facemask.train` trains without --arch
    model = f"M/{arch}.keras"
    assert (work / model).is_file() and (work / "R" / f"{arch}_metrics.json").is_file()

    run([facemask, "evaluate", "crops", "--model", model, "D/test", "--reports", "E"], work)
    assert json.loads((work / "E" / f"{arch}_metrics.json").read_text())["count"] == len(test_crops)

    photo = sorted(images.iterdir())[0]
    run([facemask, "detect", "--model", model, photo, "--out", "O"], work)
    faces = json.loads((work / "O" / f"{photo.stem}.json").read_text())
    assert faces and {face["label"] for face in faces} <= set(CLASS_NAMES)
    assert len(list((work / "O").glob(f"{photo.stem}_annotated.*"))) == 1


# ---------------------------------------------------------------- every place that names the versions agrees


def test_supported_versions_are_a_range():
    minors = [int(version.removeprefix("3.")) for version in PYTHONS if re.fullmatch(r"3\.\d+", version)]
    assert len(minors) == len(PYTHONS) and minors == list(range(minors[0], minors[-1] + 1)), (
        f"pyproject's [tool.facemask] pythons {PYTHONS}: consecutive Python 3 minor versions, oldest first")


def test_requires_python_admits_the_supported_versions_only():
    requires = PYPROJECT["project"]["requires-python"]
    admitted = [f"3.{minor}" for minor in range(100) if SpecifierSet(requires).contains(f"3.{minor}.0")]
    listed = ", ".join(admitted) if len(admitted) <= len(PYTHONS) + 2 else f"{admitted[0]} ... {admitted[-1]}"
    assert admitted == PYTHONS, (
        f"pyproject's requires-python {requires!r} admits {listed or 'no Python 3'}; "
        f"[tool.facemask] pythons (what make test proves) is {', '.join(PYTHONS)}: "
        f"'>={PYTHONS[0]},<3.{int(PYTHONS[-1][2:]) + 1}'")


def test_ruff_targets_the_oldest_supported_version():
    # Else ruff's pyupgrade rules would ask for syntax the oldest supported Python lacks.
    oldest = "py" + PYTHONS[0].replace(".", "")
    assert PYPROJECT["tool"]["ruff"]["target-version"] == oldest, f"pyproject's [tool.ruff] target-version: {oldest}"


def stated_ranges(path: Path) -> set[str]:
    """Every "Python 3.A-3.B" a file states: a notebook's in its cells' text, others' anywhere."""
    if path.suffix == ".ipynb":
        text = "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"])
    else:
        text = path.read_text()
    return {f"Python {low}-{high}" for low, high in RANGE_PHRASE.findall(text)}


@pytest.mark.parametrize(("name", "must_state"), [("README.md", True), ("requirements.txt", True),
                                                  ("face_mask_detection_cnn.ipynb", False)])
def test_documents_state_the_supported_range(name, must_state):
    stated = stated_ranges(ROOT / name)
    if must_state:
        assert stated, f"{name} states no 'Python 3.A-3.B'; pyproject's [tool.facemask] pythons is {SUPPORTED}"
    assert stated <= {SUPPORTED}, (
        f"{name} states {', '.join(sorted(stated))}; pyproject's [tool.facemask] pythons is {SUPPORTED}")


def requirement_lines(name: str) -> list[Requirement]:
    return parse_requirements((ROOT / name).read_text().splitlines())


def applies_on(requirement: Requirement, version: str) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(
        {"python_version": version, "python_full_version": f"{version}.0"})


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_requirement_markers_fit_the_supported_versions(name):
    """No marked line is dead, and a package split over several lines gets exactly one on every version."""
    lines = defaultdict(list)
    for requirement in requirement_lines(name):
        lines[canonicalize_name(requirement.name)].append(requirement)
        assert any(applies_on(requirement, version) for version in PYTHONS), (
            f"{name}: '{requirement}' applies on none of {', '.join(PYTHONS)} (pyproject's [tool.facemask] pythons)")
    for package, requirements in lines.items():
        for version in PYTHONS if len(requirements) > 1 else []:
            applying = [str(requirement) for requirement in requirements if applies_on(requirement, version)]
            assert len(applying) == 1, f"{name}: Python {version} gets {applying or 'no line'} for {package}"


@pytest.mark.slow
def test_makefile_prepares_every_supported_version():
    if shutil.which("make") is None:
        pytest.skip("make not found")
    dry_run = run(["make", "--dry-run", "--always-make", "pythons"], ROOT).stdout
    assert f"for v in {' '.join(PYTHONS)};" in dry_run, dry_run
