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


# Nothing binary is committed: the sample and every test's videos are made when they are needed
# (a scratch video once slipped in at the repo root with a commit).
MEDIA = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".asf", ".flv", ".nut", ".ts", ".jpg", ".png",
         ".parquet", ".onnx", ".pt", ".bin", ".safetensors")


def test_no_media_or_weights_file_is_committed():
    import shutil
    import subprocess

    import pytest

    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True).stdout
    committed = [p for p in tracked.splitlines() if p.lower().endswith(MEDIA)]
    assert not committed, f"binary files committed (make them in the test that needs them): {committed}"


def test_make_clean_removes_every_demo_output_git_ignores():
    """`make demo` writes the sample, runs, reports and manifests (each ignored by git, as its
    `.gitignore` lines say); `make clean` removes each, the manifest card with the demo's counts too."""
    recipe = (REPO / "Makefile").read_text().split("\nclean:\n", 1)[1].splitlines()[0].split()
    demo = ("/sample/", "/runs/", "/reports/", "/manifests/")
    ignored = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()
               if line.strip().startswith(demo)]
    removed = {word.strip("/").replace("$(SAMPLE)", "sample") for word in recipe}
    assert ignored and not [p for p in ignored if p.strip("/") not in removed], (ignored, recipe)
