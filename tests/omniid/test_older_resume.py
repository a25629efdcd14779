"""A resume from an older step than the run's newest (`--resume RUN/checkpoints/step-K` while
step N > K exists) abandons the newer steps before training: they move into
checkpoints/superseded/, `latest` names step K at once and log.jsonl is cut to it, so a kill, a
shorter replay, the newest-intact fallback and pruning all see one history. A newer step another
run started from refuses that resume instead."""
from __future__ import annotations

import json
import logging
from pathlib import Path


from omniid.checkpoint import damage
from omniid.cli import main
from omniid.recovery import newest_intact
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)
from six_steps import common, copy_of, six_steps  # noqa: F401  (six_steps: a pytest fixture)

STEP2, STEP3, STEP4, STEP6 = "step-00000002", "step-00000003", "step-00000004", "step-00000006"
SHELF = "superseded/from-step-00000002-1"





def step_folders(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").glob("step-*"))


def logged_steps(out: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]


def test_a_kill_before_the_first_save_leaves_latest_at_the_older_step_and_the_same_command_goes_on_from_it(
        six_steps, sample_manifest, tmp_path, monkeypatch, caplog):
    """Killed in the first replayed step: `latest` already names step 2 and the log ends there, so
    the plain command (no --resume) continues from step 2, not from the abandoned step 6."""
    import omniid.engine

    out = copy_of(six_steps, tmp_path)
    root = out / "checkpoints"
    real = omniid.engine.optimizer_step

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(omniid.engine, "optimizer_step", killed)
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert main(common(sample_manifest, out, "--resume", str(root / STEP2), "--lr", "5e-4")) == 130
    assert (root / "latest").read_text() == STEP2
    assert f"{root / 'latest'} names {STEP2}: run the same command" in caplog.text
    assert step_folders(out) == [STEP2] and logged_steps(out) == [1, 2]
    assert sorted(p.name for p in (root / SHELF).glob("step-*")) == [STEP4, STEP6]
    assert all(damage(root / SHELF / name) is None for name in (STEP4, STEP6))  # moved whole, never deleted
    assert (f"moved 2 newer step folders ({STEP4}, {STEP6}) to {root / SHELF} (kept there, never deleted); "
            f"latest names {STEP2}") in caplog.text
    monkeypatch.setattr(omniid.engine, "optimizer_step", real)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert main(common(sample_manifest, out, "--lr", "5e-4")) == 0
    assert f"resumed from {root / STEP2} at step 2" in caplog.text
    assert logged_steps(out) == [1, 2, 3, 4, 5, 6] and step_folders(out) == [STEP2, STEP4, STEP6]
    assert not (root / "superseded" / "from-step-00000002-2").exists()  # nothing newer was left to move


def test_a_replay_that_stops_early_leaves_no_abandoned_step_and_the_fallback_never_looks_into_the_shelf(
        six_steps, sample_manifest, tmp_path, caplog):
    out = copy_of(six_steps, tmp_path)
    root = out / "checkpoints"
    assert main(common(sample_manifest, out, "--resume", str(root / STEP2), "--stop-after", "1",
                       "--keep-checkpoints", "2")) == 0
    assert step_folders(out) == [STEP2, STEP3] and (root / "latest").read_text() == STEP3
    assert logged_steps(out) == [1, 2, 3]
    assert sorted(p.name for p in (root / SHELF).glob("step-*")) == [STEP4, STEP6]  # pruning left the shelf alone
    (root / STEP3 / "encoder.safetensors").write_bytes(b"cut")
    with caplog.at_level(logging.WARNING, logger="omniid"):
        assert newest_intact(out) == root / STEP2  # not the shelved step 6
    assert (root / "latest").read_text() == STEP2 and damage(root / SHELF / STEP6) is None


def test_a_newer_step_another_run_started_from_refuses_the_older_resume(six_steps, sample_manifest, tmp_path,
                                                                          caplog):
    """Step 4 is what another run started from (--init-from): a resume from step 2 would move it
    away from where that run recorded it (and the replay's save of step 4 would be refused), so
    it is refused before any work; the way it names (another --out) goes on from step 2."""
    out = copy_of(six_steps, tmp_path)
    root = out / "checkpoints"
    user = tmp_path / "user"
    assert main(common(sample_manifest, user, "--steps", "1", "--init-from", str(root / STEP4))) == 0
    log_before = (out / "log.jsonl").read_text()
    assert main(common(sample_manifest, out, "--resume", str(root / STEP2))) == 2
    assert (f"{root / STEP4}: {user.resolve()} started from this checkpoint (--init-from), so a resume from the "
            f"older {STEP2}, which would set it aside with the run's other steps after {STEP2}, is refused: resume "
            f"from {STEP4} or a newer step to go on with this run, or go on from {STEP2} in another run folder: "
            f"--resume {root / STEP2} --out NEW_FOLDER") in caplog.text
    assert step_folders(out) == [STEP2, STEP4, STEP6] and (root / "latest").read_text() == STEP6
    assert not (root / "superseded").exists() and (out / "log.jsonl").read_text() == log_before
    branch = tmp_path / "branch"
    assert main(common(sample_manifest, branch, "--resume", str(root / STEP2), "--stop-after", "1")) == 0
    assert step_folders(branch) == [STEP3] and step_folders(out) == [STEP2, STEP4, STEP6]
