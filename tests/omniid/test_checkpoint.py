"""Checkpoint writes clean up after themselves: a save that fails removes its temporary folder, and
a full disk is one message naming the file system and its free space (exit 2), with `latest`
still naming the last complete checkpoint. A checkpoint gives back the random state it saved."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from omniid.checkpoint import FILES_KEY, capture_rng, damage, load_checkpoint, save_checkpoint
from omniid.cli import main
from omniid.config import get_preset
from omniid.objectives import build_objective
from omniid.optim import build_optimizer
from omniid_fixtures import kept_faces, mount_tmpfs, one_torch_thread, sample_manifest, unmount  # noqa: F401  (pytest fixtures)


def run_args(manifest: Path, out: Path, steps: int = 3) -> list[str]:
    return ["--manifest", str(manifest), "--preset", "tiny", "--out", str(out), "--steps", str(steps),
            "--save-every", "1", "--eval-every", "100"]


def check_stopped_after_one_step(out: Path, caplog) -> None:
    root = out / "checkpoints"
    assert not list(root.glob(".tmp-*")), "the failed save left its temporary folder"
    assert (root / "latest").read_text() == "step-00000001" and damage(root / "step-00000001") is None
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("the disk is full (") and "MiB free" in errors[0]
    assert "Training stopped after step 2" in errors[0]
    assert f"{root}/latest names step-00000001: run the same command to continue from it" in errors[0]


def test_state_records_each_file_and_damage_finds_a_changed_one(sample_manifest, tmp_path):
    out = tmp_path / "run"
    assert main(run_args(sample_manifest, out, steps=1)) == 0
    step = out / "checkpoints" / "step-00000001"
    recorded = json.loads((step / "state.json").read_text())[FILES_KEY]
    assert set(recorded) == {p.name for p in step.iterdir()} - {"state.json"}
    assert damage(step) is None
    (step / "rng.safetensors").write_bytes((step / "rng.safetensors").read_bytes()[::-1])
    assert damage(step) == "rng.safetensors does not match the SHA-256 recorded when it was saved"


def test_a_save_that_fails_for_want_of_space_leaves_nothing_behind(sample_manifest, tmp_path, caplog, monkeypatch):
    """A full disk as safetensors reports it (its own error class, the errno only in the text),
    injected into the second save: runs where no small file system can be mounted."""
    import omniid.checkpoint
    from safetensors import SafetensorError

    real, calls = omniid.checkpoint.save_file, []

    def fill_up(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 3:  # step 2's optimizer file, after its weights were written
            Path(path).write_bytes(b"partial")
            raise SafetensorError('Error while serializing: I/O error: No space left on device (os error 28)')
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(omniid.checkpoint, "save_file", fill_up)
    out = tmp_path / "run"
    assert main(run_args(sample_manifest, out)) == 2
    check_stopped_after_one_step(out, caplog)


@pytest.fixture
def small_disk(tmp_path):
    """A real 7 MiB file system (tmpfs): room for one tiny checkpoint (about 4.8 MB), not two."""
    mount = tmp_path / "small"
    why = mount_tmpfs(mount, "size=7m")
    if why is not None:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {why}")
    yield mount
    unmount(mount)


def test_a_full_disk_during_a_save_is_one_message_and_leaves_no_temporary_folder(sample_manifest, small_disk,
                                                                                  caplog):
    out = small_disk / "run"
    assert main(run_args(sample_manifest, out)) == 2
    check_stopped_after_one_step(out, caplog)
    message = next(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert "No space left on device" in message and f"the file system mounted at {small_disk}" in message


def _draws() -> tuple:
    return torch.rand(4).tolist(), np.random.rand(4).tolist(), [random.random() for _ in range(4)]


def test_a_checkpoint_restores_the_random_state_it_saved(tmp_path):
    """Every draw of today's trainer is keyed by (seed, step), so equal losses after a resume
    (test_engine) cannot show whether the global RNGs come back; a draw that is not keyed (a
    dropout, a library's own) would then differ from the uninterrupted run's."""
    preset = get_preset("tiny")
    torch.manual_seed(0)
    model = build_objective("mtd", preset)
    optimizer = build_optimizer(model, preset.optim)
    torch.manual_seed(11), np.random.seed(12), random.seed(13)
    folder = save_checkpoint(tmp_path, model, optimizer, 1, {"samples": 2}, [capture_rng()])
    after_save = _draws()
    torch.manual_seed(21), np.random.seed(22), random.seed(23)  # a fresh process's state, another one
    state = load_checkpoint(folder, model, optimizer, rank=0)
    assert state["step"] == 1 and state["samples"] == 2
    assert _draws() == after_save
