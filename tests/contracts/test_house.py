"""The house rules that hold for every module, checked on the code itself: small files, short
functions. (Imports that only point down: `lint-imports`, run by `make test`, with the contracts in
pyproject.toml.)"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = (REPO / "mfhq", REPO / "train" / "omniid")
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 60
# Compiled numba kernels: one function each by design (splitting them costs a call per element).
KERNELS: set[str] = set()


def _sources():
    return sorted(p for root in SOURCE_ROOTS for p in root.rglob("*.py"))


def test_no_source_file_is_over_the_line_limit():
    long = [f"{p.relative_to(REPO)} ({n})" for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_function_is_over_the_line_limit():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{path.relative_to(REPO)}:{node.name}"
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and name not in KERNELS:
                    long.append(f"{name} ({length})")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
