"""`--resume` naming a step on one of checkpoints/' shelves, and a kill part way through the moves
of a resume from an older step (`omniid.shelves`): a damaged or non-finite step is refused in one
line; a superseded step brings its history back into the run (the run's newer steps superseded in
turn, nothing deleted); a kill leaves a staging shelf that the next start finishes, so each
resume's abandoned steps end up in one shelf folder."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from omniid.checkpoint import damage, read_run_preset, run_of
from omniid.cli import main
from omniid.recovery import newest_intact
from omniid.shelves import set_aside
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)
from six_steps import common, copy_of, six_steps  # noqa: F401  (six_steps: a pytest fixture)

STEP2, STEP4, STEP6 = "step-00000002", "step-00000004", "step-00000006"
SHELF1, SHELF2 = "superseded/from-step-00000002-1", "superseded/from-step-00000002-2"





def steps_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("step-*"))


def losses(run_or_shelf: Path) -> dict[int, float]:
    records = map(json.loads, (run_or_shelf / "log.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def killed_moving(monkeypatch, source: Path, into: str) -> None:
    """A Ctrl-C when `source` is about to be renamed into a path holding `into`."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(src) == source and into in str(dst):
            raise KeyboardInterrupt
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_a_damaged_or_non_finite_step_is_refused_in_one_line_whatever_the_out(six_steps, sample_manifest, tmp_path,
                                                                            caplog):
    out = copy_of(six_steps, tmp_path)
    root = out / "checkpoints"
    (root / STEP6 / "encoder.safetensors").write_bytes(b"cut")
    assert newest_intact(out) == root / STEP4  # the run sets step 6 aside into damaged/
    set_aside(root / STEP4, "non-finite")  # as a non-finite loss at step 5 would (omniid.recovery.after_non_finite)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*")), (out / "log.jsonl").read_text()
    for shelved, why in ((root / "non-finite" / STEP4, "set aside by its run because its weights gave a non-finite "
                          "loss at the next step, as they will whatever the lr; it is never trained from: resume from "
                          "an older step (--resume auto takes the run's newest intact one) with a lower --lr"),
                         (root / "damaged" / STEP6, "a damaged checkpoint, set aside by its run (its check fails: "
                          "encoder.safetensors has 3 bytes, ")):
        for into in (out, tmp_path / "new"):
            caplog.clear()
            assert main(common(sample_manifest, into, "--resume", str(shelved))) == 2
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1 and errors[0].startswith(f"{shelved}: {why}"), errors
    assert (sorted(str(p.relative_to(out)) for p in out.rglob("*")), (out / "log.jsonl").read_text()) == before
    assert not (tmp_path / "new" / "checkpoints").exists()


def test_going_back_to_a_superseded_step_makes_its_history_the_runs_again(six_steps, sample_manifest, tmp_path,
                                                                         caplog):
    """Step 2 resumed with a lower lr (steps 4 and 6 superseded), then the first history's step 4
    resumed with the first options: the lower-lr steps are superseded in turn, step 4 comes back
    with its records, and the run trains on to the very losses of the first run."""
    out = copy_of(six_steps, tmp_path)
    root = out / "checkpoints"
    assert main(common(sample_manifest, out, "--resume", str(root / STEP2), "--lr", "5e-4")) == 0
    lower = losses(out)
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert main(common(sample_manifest, out, "--resume", str(root / SHELF1 / STEP4))) == 0
    assert steps_in(root / SHELF1) == [STEP6] and steps_in(root / SHELF2) == [STEP4, STEP6]
    assert steps_in(root) == [STEP2, STEP4, STEP6] and (root / "latest").read_text() == STEP6
    assert (root / STEP4 / "state.json").read_text() == (six_steps / "checkpoints" / STEP4 / "state.json").read_text()
    assert (f"resuming from {STEP4}, a superseded step of this run: moved the run's 2 step folders newer than "
            f"{STEP2} ({STEP4}, {STEP6}) to {root / SHELF2} (kept there, never deleted) and {STEP4} back from "
            f"{root / SHELF1}, with their records in log.jsonl; latest names {STEP4}") in caplog.text
    assert f"resumed from {root / STEP4} at step 4" in caplog.text
    assert "cannot be read" not in caplog.text  # its options compared with the run's preset.json
    assert sorted(p.name for p in (root / "superseded").iterdir()) == [SHELF1.split("/")[1], SHELF2.split("/")[1]]
    assert all(damage(folder) is None for folder in (root / SHELF2).glob("step-*"))
    assert losses(root / SHELF2) == {s: v for s, v in lower.items() if s > 2}  # the lower-lr records, kept
    assert losses(out) == pytest.approx(losses(six_steps))  # one history: the first run's


def test_a_kill_part_way_through_the_moves_leaves_one_shelf_that_the_same_command_completes(
        six_steps, sample_manifest, tmp_path, monkeypatch, caplog):
    out = copy_of(six_steps, tmp_path)
    root = out / "checkpoints"
    command = common(sample_manifest, out, "--resume", str(root / STEP2), "--lr", "5e-4")
    killed_moving(monkeypatch, root / STEP4, "superseded")  # step 6 is moved first, then step 4
    assert main(command) == 130
    assert not (root / SHELF1).exists()  # a reader sees no shelf until it holds all of them
    assert (root / "latest").read_text() == STEP2 and steps_in(root) == [STEP2, STEP4]
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert main(command) == 0
    assert "a resume's moves were interrupted; finishing them (latest to name step-00000002)" in caplog.text
    assert f"resumed from {root / STEP2} at step 2" in caplog.text
    assert [p.name for p in (root / "superseded").iterdir()] == [SHELF1.split("/")[1]]
    assert steps_in(root / SHELF1) == [STEP4, STEP6] and steps_in(root) == [STEP2, STEP4, STEP6]
    assert losses(root / SHELF1) == {s: v for s, v in losses(six_steps).items() if s > 2}
    assert sorted(losses(out)) == [1, 2, 3, 4, 5, 6] and losses(out)[4] != losses(six_steps)[4]  # trained at 5e-4


def test_a_kill_while_a_superseded_step_comes_back_and_the_same_command_goes_on_from_it(
        six_steps, sample_manifest, tmp_path, monkeypatch, caplog):
    out = copy_of(six_steps, tmp_path)
    root = out / "checkpoints"
    assert main(common(sample_manifest, out, "--resume", str(root / STEP2), "--lr", "5e-4")) == 0
    command = common(sample_manifest, out, "--resume", str(root / SHELF1 / STEP4))
    killed_moving(monkeypatch, root / SHELF1 / STEP4, str(root / STEP4))
    assert main(command) == 130
    assert steps_in(root) == [STEP2] and (root / "latest").read_text() == STEP2 and steps_in(root / SHELF2) == [
        STEP4, STEP6]
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert main(command) == 0
    assert f"resumed from {root / STEP4} at step 4" in caplog.text
    assert steps_in(root / SHELF1) == [STEP6] and steps_in(root / SHELF2) == [STEP4, STEP6]
    assert not (root / "superseded" / "from-step-00000002-3").exists()
    assert losses(out) == pytest.approx(losses(six_steps))


def test_going_back_is_refused_when_it_would_set_aside_a_step_another_run_started_from(six_steps, sample_manifest,
                                                                                      tmp_path, caplog):
    out = copy_of(six_steps, tmp_path)
    root = out / "checkpoints"
    assert main(common(sample_manifest, out, "--resume", str(root / STEP2), "--lr", "5e-4")) == 0
    user = tmp_path / "user"
    assert main(common(sample_manifest, user, "--steps", "1", "--init-from", str(root / STEP4))) == 0
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*")), (out / "log.jsonl").read_text()
    assert main(common(sample_manifest, out, "--resume", str(root / SHELF1 / STEP4))) == 2
    assert (f"{root / STEP4}: {user.resolve()} started from this checkpoint (--init-from), so a resume from the "
            f"superseded {STEP4}, which would set it aside with the run's other steps after {STEP2}, is refused: "
            f"resume from {STEP4} or a newer step to go on with this run, or go on from {STEP4} in another run "
            f"folder: --resume {root / SHELF1 / STEP4} --out NEW_FOLDER") in caplog.text
    assert (sorted(str(p.relative_to(out)) for p in out.rglob("*")), (out / "log.jsonl").read_text()) == before


def test_a_new_run_is_never_started_from_a_damaged_or_non_finite_step(six_steps, sample_manifest, tmp_path):
    """--init-from took the non-finite shelf's step (and a damaged one whose files pass their check
    now) as any checkpoint: a new run trained from weights its run had set aside."""
    out = copy_of(six_steps, tmp_path)
    root = out / "checkpoints"
    shelved = set_aside(root / STEP4, "non-finite")
    damaged = set_aside(root / STEP2, "damaged")  # set aside, though its files read intact now
    for folder in (shelved, damaged):
        new = tmp_path / f"from-{folder.parent.name}"
        assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--steps", "1", "--eval-every", "100",
                     "--init-from", str(folder), "--out", str(new)]) == 2
        assert not (new / "checkpoints").exists()


def test_a_shelved_step_reads_its_runs_preset(six_steps, tmp_path):
    """omniid-eval, -generate and the flux stages read a step's preset and prompt cache from its
    run: a step on a shelf (one level, or two for superseded/from-step-K-<n>/) is the run's too."""
    out = copy_of(six_steps, tmp_path)
    root = out / "checkpoints"
    on_shelves = [set_aside(root / STEP6, "non-finite"), set_aside(root / STEP4, "superseded/from-step-00000002-1")]
    for folder in (root / STEP2, *on_shelves):
        assert run_of(folder) == out.absolute()
        assert read_run_preset(folder) == json.loads((out / "preset.json").read_text())
