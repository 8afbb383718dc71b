"""The `facemask` command (facemask/__main__.py) and what an import does: only a command turns TensorFlow's
start-up filter on (facemask.quiet_start, its first import); `import facemask`, and every library module,
leaves the import system and file descriptor 2 as they were."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT
from test_imports import import_graph

from facemask.__main__ import SUBCOMMANDS, command_module, dispatch
from facemask.cli import ArgumentParser, invoked_as

ENV = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}


def command_module_names() -> set[str]:
    """Every module a command runs from: the subcommands' (a package's __main__) and the dispatcher."""
    names = {"facemask.__main__"}
    for module, _ in SUBCOMMANDS.values():
        package = ROOT.joinpath(*module.split("."))
        names.add(f"{module}.__main__" if (package / "__main__.py").is_file() else module)
    return names


def library_module_names() -> list[str]:
    return sorted(set(import_graph()) - command_module_names() - {"facemask.quiet_start"})


def first_import(module: str) -> str:
    """The first import statement of `module`'s file, after `from __future__`, as written."""
    import ast

    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text())
    node = next(node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
                and not (isinstance(node, ast.ImportFrom) and node.module == "__future__"))
    return ast.unparse(node)


@pytest.mark.parametrize("module", sorted(command_module_names()))
def test_a_command_module_turns_the_filter_on_before_any_other_import(module):
    assert first_import(module) == "import facemask.quiet_start"




def test_no_library_module_imports_the_filter_even_through_another():
    graph = import_graph()
    libraries = library_module_names()
    assert {"facemask", "facemask.cli", "facemask.tf_startup", "facemask.images"} <= set(libraries)
    for module in libraries:
        reached, todo = set(), [module]
        while todo:
            for target in graph[todo.pop()] - reached:
                reached.add(target)
                todo.append(target)
        assert not reached & (command_module_names() | {"facemask.quiet_start"}), module


def test_the_dispatcher_imports_no_command_module_until_one_is_chosen():
    """So `facemask --help` answers at once: the command modules import TensorFlow or Gradio."""
    assert import_graph()["facemask.__main__"] <= {"facemask", "facemask.cli", "facemask.quiet_start"}


@pytest.mark.slow
def test_importing_the_library_leaves_the_import_system_and_stderr_alone():
    """In a fresh interpreter (the test's own has imported command modules): `import facemask`, then
    every library module, TensorFlow included through them; no finder of facemask's on sys.meta_path (absl
    and six add their own), fd 2 still the same file."""
    code = """
import importlib, os, sys
before = os.fstat(2)
for name in sys.argv[1:]:
    importlib.import_module(name)
    assert not [f for f in sys.meta_path if type(f).__module__.startswith("facemask")], (name, sys.meta_path)
    assert os.path.samestat(os.fstat(2), before), name
assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ and "tensorflow" in sys.modules
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code, "facemask", *library_module_names()], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr[-3000:]


def exit_status(argv: list[str]) -> int:
    """What `facemask ARGV` exits with: the subcommand's return value, or its parser's SystemExit (some
    modules' `main` returns the parser's status, others let it through)."""
    try:
        return dispatch(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_each_subcommand_is_its_module_with_its_prog(name, capsys):
    module = command_module(name)
    assert callable(module.main) and module.__name__ in command_module_names()
    assert exit_status([name, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: facemask {name} ")


def test_a_subcommands_own_subcommand_keeps_the_full_prog(capsys):
    status = exit_status(["evaluate", "crops", "--no-such-flag"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("usage: facemask evaluate crops ")
    assert err.splitlines()[-1] == "error: the following arguments are required: --model, split_dir"


def test_the_subcommands_exit_status_and_error_come_through(tmp_path, capsys):
    missing = tmp_path / "missing.keras"
    assert dispatch(["predict", "--model", str(missing), "face.jpg"]) == 1
    assert capsys.readouterr().err.splitlines() == [f"error: model file not found: {missing}"]


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as stop:
        dispatch(["--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and out.startswith("usage: facemask [-h] SUBCOMMAND ...")
    listed = re.findall(r"^ {4}(\S+) ", out, flags=re.M)
    assert listed == list(SUBCOMMANDS)


@pytest.mark.parametrize(("argv", "error"), [
    ([], "error: the following arguments are required: SUBCOMMAND"),
    (["nope"], "error: argument SUBCOMMAND: invalid choice: 'nope' (choose from "),
    (["--model", "m.keras"], "error: the following arguments are required: SUBCOMMAND"),
])
def test_a_missing_or_unknown_subcommand_is_a_usage_error(argv, error, capsys):
    with pytest.raises(SystemExit) as stop:
        dispatch(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("usage: facemask ") and err.splitlines()[-1].startswith(error)


def test_invoked_as_names_the_parsers_made_inside_it_only():
    with invoked_as("facemask demo"):
        parser = ArgumentParser(prog="python -m facemask.demo")
        child = parser.add_subparsers().add_parser("child")
    assert (parser.prog, child.prog) == ("facemask demo", "facemask demo child")
    assert ArgumentParser(prog="python -m facemask.demo").prog == "python -m facemask.demo"


@pytest.mark.slow
def test_serving_an_exported_model_loads_neither_tensorflow_nor_keras(tmp_path, real_sample_crops):
    """What a small device gains from the .onnx: `facemask detect` on a .keras with its export beside it
    serves the export and never imports TensorFlow or Keras (README, "On a small device"); from the second
    start on, not even onnx (CenterFace prepared once, then read from the cache folder)."""
    from conftest import astronaut_photo

    from facemask.conversion import export
    from facemask.models import build_compact, save_model

    model = save_model(build_compact(), tmp_path / "compact.keras")
    export(model, "onnx", None, model.with_suffix(".onnx"), real_sample_crops, None)
    photo = tmp_path / "astronaut.png"
    astronaut_photo().save(photo)
    code = """
import atexit, sys
atexit.register(lambda: print("loaded:", sorted({"tensorflow", "keras", "onnx"} & set(sys.modules))))
from facemask.__main__ import main
sys.argv[0] = "facemask"
main()
"""
    for loaded in ("loaded: ['onnx']", "loaded: []"):
        result = subprocess.run([sys.executable, "-c", code, "detect", "--model", str(model), str(photo),
                                 "--out", str(tmp_path / "out")], cwd=ROOT, env=ENV | {
                                     "FACEMASK_CACHE": str(tmp_path / "cache")}, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        assert re.search(r"^astronaut\.png: 1 face, ", result.stdout, re.MULTILINE), result.stdout
        assert result.stdout.splitlines()[-1] == loaded
        assert "(ONNX Runtime)" in result.stderr
