"""The notebook's Colab set-up cell: which packages pip replaced that the running session had loaded.

A module already imported stays in memory when pip replaces its files: the session then mixes the old
code with the new files (NumPy's compiled parts, TensorFlow built against another NumPy), so it must
be restarted. The cell takes `installed_versions()` before `%pip install`, then asks
`replaced_in_use(before)`; an empty list means no restart is needed.

Standard library only: the cell imports this from the freshly cloned project before pip has installed
anything.
"""

from __future__ import annotations

import importlib
import sys
from importlib import metadata


def installed_versions() -> dict[str, str]:
    """{distribution name: version} of everything installed where this interpreter looks."""
    importlib.invalidate_caches()  # see what pip just wrote
    return {dist.metadata["Name"]: dist.version for dist in metadata.distributions() if dist.metadata["Name"]}


def module_names(dist: str) -> set[str]:
    """The modules a distribution's files hold, as sys.modules names them (google/protobuf/__init__.py:
    google.protobuf)."""
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        return set()
    names = set()
    for path in files:
        if path.suffix == ".py" or ".so" in path.suffixes:
            name = str(path).split(".", 1)[0].replace("/", ".")
            names.add(name.removesuffix(".__init__"))
    return names


def replaced_in_use(before: dict[str, str]) -> list[str]:
    """`numpy 1.26.4 -> 2.0.2` for each distribution whose version changed since `before` and one of
    whose modules this session has imported; removed distributions are not judged."""
    now = installed_versions()
    loaded = set(sys.modules)
    return [f"{dist} {version} -> {now[dist]}" for dist, version in sorted(before.items())
            if dist in now and now[dist] != version and module_names(dist) & loaded]
