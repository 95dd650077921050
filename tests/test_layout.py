"""The repository's code imports as installed packages: no path tricks, no tests as libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("lutsr", "train", "tools", "bench", "tests")


def _modules():
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def _is_test_module(path: Path) -> bool:
    """Under tests/, a conftest or a test_*.py: code that may import conftests."""
    return (path.parent.name == "tests" or path.name == "conftest.py"
            or path.name.startswith("test_"))


def test_no_module_edits_the_import_path():
    """Modules import what is installed (``pip install -e .``), never by editing the path."""
    needle = "sys." + "path"  # spelled apart so that this file does not match itself
    found = [f"{p.relative_to(ROOT)}:{n}" for p in _modules()
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if needle in line]
    assert not found, found


def test_no_library_imports_a_test_module():
    """Test modules and conftests are not libraries: shared code lives in plain modules."""
    found = []
    for path in _modules():
        if _is_test_module(path):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if any(part == "conftest" or part.startswith("test_")
                       for part in name.split(".")):
                    found.append(f"{path.relative_to(ROOT)}: {name}")
    assert not found, found


@pytest.mark.parametrize("tool", ["build_lut.py", "evaluate.py"])
def test_tools_run_from_any_folder(tmp_path, tool):
    """tools/*.py import the installed ``train`` package: they run from outside the checkout."""
    done = subprocess.run([sys.executable, str(ROOT / "tools" / tool), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
