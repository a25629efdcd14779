"""A finished tiny 6-step training run with checkpoints at steps 2, 4 and 6, made once per test
module, and what the resume tests do with it (tests/omniid/test_older_resume.py,
test_shelved_resume.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from omniid.cli import main


def common(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["--manifest", str(manifest), "--preset", "tiny", "--out", str(out), "--steps", "6", "--save-every", "2",
            "--eval-every", "100", *extra]


@pytest.fixture(scope="module")
def six_steps(sample_manifest, tmp_path_factory) -> Path:
    """A finished 6-step run with checkpoints at steps 2, 4 and 6."""
    out = tmp_path_factory.mktemp("six-steps") / "run"
    assert main(common(sample_manifest, out)) == 0
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    """The run copied into this test's own folder, to change at will."""
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out
