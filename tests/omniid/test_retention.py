"""Checkpoint retention: the newest N step folders plus every Mth step are kept; the newest
complete checkpoint survives a kill during a save or during a deletion."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from omniid.checkpoint import point_latest
from omniid.cli import main
from omniid.recovery import newest_intact
from omniid.retention import USED_BY_FILE, prune, record_use
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)


def args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["--manifest", str(manifest), "--preset", "tiny", "--out", str(out), "--steps", "6", "--save-every", "1",
            "--eval-every", "100", "--keep-checkpoints", "2", "--milestone-every", "3", *extra]


def steps_kept(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir())


def test_the_newest_n_and_every_milestone_are_kept(sample_manifest, tmp_path):
    out = tmp_path / "run"
    assert main(args(sample_manifest, out)) == 0
    assert steps_kept(out) == ["step-00000003", "step-00000005", "step-00000006"]
    assert (out / "checkpoints" / "latest").read_text() == "step-00000006"
    all_kept = tmp_path / "all"
    assert main(args(sample_manifest, all_kept, "--keep-checkpoints", "0")) == 0
    assert len(steps_kept(all_kept)) == 6


def test_a_kill_during_a_save_leaves_the_newest_complete_checkpoint(sample_manifest, tmp_path, monkeypatch):
    import omniid.checkpoint

    real = omniid.checkpoint._write_step

    def killed_at_step_5(tmp, model, optimizer, step, state, rngs):
        if step == 5:
            model.save_pretrained(tmp)  # half the folder written, then Ctrl-C
            raise KeyboardInterrupt
        return real(tmp, model, optimizer, step, state, rngs)

    monkeypatch.setattr(omniid.checkpoint, "_write_step", killed_at_step_5)
    out = tmp_path / "run"
    assert main(args(sample_manifest, out)) == 130
    assert steps_kept(out) == ["step-00000003", "step-00000004"]
    assert newest_intact(out) == out / "checkpoints" / "step-00000004"
    monkeypatch.setattr(omniid.checkpoint, "_write_step", real)
    assert main(args(sample_manifest, out)) == 0  # the same command continues from step 4
    assert steps_kept(out) == ["step-00000003", "step-00000005", "step-00000006"]


def test_a_deletion_cut_short_is_finished_on_the_next_start(sample_manifest, tmp_path, monkeypatch):
    import omniid.retention

    out = tmp_path / "run"
    real = omniid.retention._remove

    def killed(folder):
        raise KeyboardInterrupt  # the folder was renamed aside, then the process died

    monkeypatch.setattr(omniid.retention, "_remove", killed)
    assert main(args(sample_manifest, out, "--steps", "3", "--keep-checkpoints", "1")) == 130
    assert [p.name for p in (out / "checkpoints").glob(".deleting-*")] == [".deleting-step-00000001"]
    assert newest_intact(out) == out / "checkpoints" / "step-00000002"
    monkeypatch.setattr(omniid.retention, "_remove", real)
    assert main(args(sample_manifest, out, "--steps", "3", "--keep-checkpoints", "1")) == 0
    assert not list((out / "checkpoints").glob(".deleting-*"))
    assert steps_kept(out) == ["step-00000003"]


@pytest.mark.parametrize("keep", ["-1"])
def test_a_negative_keep_is_a_flag_error(sample_manifest, tmp_path, caplog, keep):
    assert main(args(sample_manifest, tmp_path / "run", "--keep-checkpoints", keep)) == 2
    assert f"--keep-checkpoints takes an integer >= 0, got {keep}" in caplog.text
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_a_step_another_run_started_from_is_never_pruned_while_that_run_exists(tmp_path):
    """--init-from records the new run in used-by.json: pruning keeps that step however old, and
    lets it go once the run that used it is deleted."""
    root = tmp_path / "run" / "checkpoints"
    for step in range(2, 12, 2):
        (root / f"step-{step:08d}").mkdir(parents=True)
        (root / f"step-{step:08d}" / "encoder.safetensors").write_bytes(b"weights")
    point_latest(root, root / "step-00000010")
    user = tmp_path / "flow"
    user.mkdir()
    record_use(root / "step-00000004", user)
    assert (root / USED_BY_FILE).is_file()
    assert prune(root, keep=2, milestone_every=0) == ["step-00000002", "step-00000006"]
    assert steps_kept(tmp_path / "run") == ["step-00000004", "step-00000008", "step-00000010"]
    user.rmdir()  # the run that started from step 4 is gone: step 4 is an old step like any other
    assert prune(root, keep=2, milestone_every=0) == ["step-00000004"]


def test_the_step_latest_names_is_kept_even_when_older_than_the_newest_n(tmp_path):
    """Pruning never deletes the step `latest` names (the one `--resume auto` starts from), even
    where it is not among the newest N (the module's rule; here N = 1 and `latest` two steps back)."""
    root = tmp_path / "checkpoints"
    for step in range(1, 5):
        (root / f"step-{step:08d}").mkdir(parents=True)
    point_latest(root, root / "step-00000002")
    assert prune(root, keep=1, milestone_every=0) == ["step-00000001", "step-00000003"]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step-00000002", "step-00000004"]
