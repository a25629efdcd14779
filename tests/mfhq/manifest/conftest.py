"""A real manifest folder written by cluster-sample over a small synthetic run, once per module,
and a fresh copy of it (beside a copy of its run: the sidecar finds the run relatively) for a
test to damage."""
from __future__ import annotations

import shutil

import pytest

from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from synthetic_runs import ClipSpec, write_run


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    specs = [ClipSpec("celebvhq", f"clip{i:02d}", f"yt{i:02d}", person=i) for i in range(4)]
    cluster_sample([write_run(root / "run", specs)], root / "man", CurateConfig(test_videos=1))
    return root / "man"


@pytest.fixture
def built_folder(built, tmp_path):
    shutil.copytree(built.parent / "run", tmp_path / "run")
    return shutil.copytree(built, tmp_path / "man")
