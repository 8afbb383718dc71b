"""The Colab set-up cell's check: which packages pip replaced that the running session had loaded.

The whole cell runs in tests/test_notebook.py (a simulated Colab, slow); here its two functions alone.
"""

from __future__ import annotations

import ast
import sys
from importlib import metadata

import numpy as np
from conftest import ROOT

from facemask.colab import installed_versions, module_names, replaced_in_use


def test_installed_versions_are_what_pip_reports():
    versions = installed_versions()
    assert versions["numpy"] == metadata.version("numpy") == np.__version__
    assert versions["tqdm"] == metadata.version("tqdm")


def test_module_names_are_as_sys_modules_names_them():
    assert {"tqdm", "tqdm.auto"} <= module_names("tqdm")
    assert "google.protobuf" in module_names("protobuf")  # a namespace package: not "google" alone
    assert module_names("no-such-distribution") == set()


def test_a_loaded_package_whose_version_changed_needs_a_restart():
    assert "numpy" in sys.modules
    assert replaced_in_use({"numpy": "1.0.0"}) == [f"numpy 1.0.0 -> {np.__version__}"]
    assert replaced_in_use({"numpy": np.__version__}) == []  # pip left it alone
    assert replaced_in_use({"no-such-distribution": "1.0"}) == []  # removed since: not judged


def test_a_package_this_session_never_imported_needs_no_restart():
    # ruff is run as a command, never imported by the tests.
    assert module_names("ruff") and not module_names("ruff") & set(sys.modules)
    assert replaced_in_use({"ruff": "0.0.1"}) == []


def test_it_needs_nothing_but_the_standard_library():
    """The set-up cell imports it from the fresh clone before pip has installed anything."""
    tree = ast.parse((ROOT / "facemask" / "colab.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
