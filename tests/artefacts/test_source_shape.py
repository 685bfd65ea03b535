"""The shape of the source in src/ebs_snapshots: modules and functions a reader can take in
at once (at most MODULE_LINES and FUNCTION_LINES lines), each module saying first what it is
for (a docstring), and the shared modules' public functions saying what they give back (a
return annotation; make lint's mypy checks the rest of their hints)."""

import ast
from pathlib import Path

import pytest

# This file may move within tests/: the root is the nearest parent holding src/ebs_snapshots.
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "src" / "ebs_snapshots").is_dir())
PACKAGE = ROOT / "src" / "ebs_snapshots"
MODULES = sorted(PACKAGE.rglob("*.py"))
MODULE_LINES, FUNCTION_LINES = 500, 40
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def name(path):
    return path.relative_to(ROOT).as_posix()


def tree(path):
    return ast.parse(path.read_text(), filename=str(path))


def test_the_modules_are_found():
    assert len(MODULES) > 20 and PACKAGE / "common" / "runtime.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=name)
def test_a_module_is_at_most_500_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MODULE_LINES, f"{name(path)} has {lines} lines: split it by concern"


@pytest.mark.parametrize("path", MODULES, ids=name)
def test_a_function_is_at_most_40_lines_from_its_def_to_its_last_line(path):
    long = [
        f"{node.name} (line {node.lineno}): {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree(path))
        if isinstance(node, FUNCTIONS) and node.end_lineno - node.lineno + 1 > FUNCTION_LINES
    ]
    assert not long, f"{name(path)}: over {FUNCTION_LINES} lines: {'; '.join(long)}"


@pytest.mark.parametrize("path", MODULES, ids=name)
def test_a_module_opens_with_a_docstring(path):
    assert ast.get_docstring(tree(path)), f"{name(path)} does not open with a docstring"


@pytest.mark.parametrize("path", sorted((PACKAGE / "common").glob("*.py")), ids=name)
def test_a_shared_modules_public_functions_have_a_return_annotation(path):
    """Its functions and its classes' methods whose names do not start with _."""
    body = tree(path).body
    nodes = body + [node for cls in body if isinstance(cls, ast.ClassDef) for node in cls.body]
    bare = [
        f"{node.name} (line {node.lineno})"
        for node in nodes
        if isinstance(node, FUNCTIONS) and not node.name.startswith("_") and node.returns is None
    ]
    assert not bare, f"{name(path)}: no return annotation: {', '.join(bare)}"
