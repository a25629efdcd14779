"""run_shard writes a shard only while its driver holds the run: an outlived runner writes nothing."""
from __future__ import annotations

import pytest

from conftest import SAMPLE_PRESET
from mfhq.config import load_pipeline
from mfhq.manifest.lock import FolderLock, NotOwner
from mfhq.records import Shard
from mfhq.sources.base import SourceProblem
from mfhq.worker.shard import run_shard


def test_a_shard_is_written_only_under_its_drivers_lock(tmp_path):
    # Source problems only: their rows need no worker process, so the test loads no models.
    problem = SourceProblem("folder", "gone", "missing", "gone.mp4: no such file")
    shard = Shard("folder-00000", ["folder/gone"], [problem])
    cfg = load_pipeline(SAMPLE_PRESET)
    run = tmp_path / "run"
    run.mkdir()
    with FolderLock(run) as lock:  # a resumed run took the lock over from the dead driver
        with pytest.raises(NotOwner, match=rf"{run}: the lock no longer names the run this process writes for "
                                           r"\(pid \d+ on host .* holds it now\); shard folder-00000 is left"):
            run_shard(shard, run, cfg, owner="the-dead-drivers-token")
        assert not any(run.rglob("*.parquet")) and not (run / "done").exists()
        stats = run_shard(shard, run, cfg, owner=lock.token)
    assert stats.status_counts == {"missing": 1} and (run / "done" / "folder-00000.json").is_file()
    with pytest.raises(NotOwner, match="nobody holds it now"):  # the lock is gone: the run ended
        run_shard(Shard("folder-00001", ["folder/gone"], [problem]), run, cfg, owner=lock.token)
