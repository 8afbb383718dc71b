"""pyproject.toml makes the project installable with requirements.txt's ranges, the whole package included."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import PYPROJECT, ROOT, copy_package_source, parse_requirements
from packaging.utils import canonicalize_name


def by_name(requirements: list[str]) -> dict[str, str]:
    """Requirement lines -> {normalised name, with its marker if any: its ranges, sorted}.

    Through packaging's parser, so that a marker reads the same however it is spaced or quoted (wheel
    metadata writes `python_version < "3.11"` whatever the source wrote), and sorted because wheel
    metadata may write a requirement's ranges in another order.
    """
    parsed = {}
    for requirement in parse_requirements(requirements):
        marker = f"; {requirement.marker}" if requirement.marker else ""
        parsed[canonicalize_name(requirement.name) + marker] = ",".join(sorted(map(str, requirement.specifier)))
    return parsed


def test_dependencies_agree_with_requirements_txt():
    pinned = by_name((ROOT / "requirements.txt").read_text().splitlines())
    project = PYPROJECT["project"]
    runtime = by_name(project["dependencies"])
    notebook = by_name(project["optional-dependencies"]["notebook"])
    assert runtime | notebook == pinned  # same names, same ranges
    assert not runtime.keys() & notebook.keys()


def test_package_is_declared():
    assert PYPROJECT["build-system"]["build-backend"] == "setuptools.build_meta"
    assert PYPROJECT["tool"]["setuptools"] == {"packages": ["facemask", "facemask.app"]}


def test_wheel_holds_the_package_with_its_requirements(tmp_path):
    # Built from a copy, so the build's scratch folders never land in the working tree; offline
    # (no build isolation, no dependencies), so the test needs no index.
    source = copy_package_source(tmp_path / "src")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                             "--wheel-dir", str(tmp_path / "dist"), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("face_mask_detection-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "facemask").rglob("*.py")}
    # split.py stays a script of the clone (no top-level `split` module installed); its work is facemask.split.
    assert modules <= names and "facemask/split.py" in modules and "split.py" not in names
    assert not any(name.startswith(("tests/", "sample/", "bench/", "scripts/")) for name in names)
    required = [line.removeprefix("Requires-Dist: ") for line in metadata.splitlines()
                if line.startswith("Requires-Dist: ") and "extra ==" not in line]
    assert by_name(required) == by_name(PYPROJECT["project"]["dependencies"])
