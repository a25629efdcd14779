"""A step saved again (after a kill between a save's rename and the move of `latest`, the resume
replays to a step the run had saved) never loses that step to a kill: the old folder is renamed aside before the new one comes in, and the
next start puts one back. Each test leaves on disk what a kill at one point of the save leaves,
then runs the trainer's own resume path."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from omniid.checkpoint import damage
from omniid.cli import main
from omniid.recovery import newest_intact, remove_stale_temps, resume_point
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)

STEP2, STEP4 = "step-00000002", "step-00000004"


def common(manifest: Path, out: Path) -> list[str]:
    return ["--manifest", str(manifest), "--preset", "tiny", "--out", str(out), "--steps", "6", "--save-every", "2",
            "--eval-every", "100"]


@pytest.fixture(scope="module")
def runs(sample_manifest, tmp_path_factory) -> tuple[Path, Path]:
    """(a run stopped after 4 of 6 steps, its copy resumed from step 2 for 2 steps: step 4 saved again).
    The copy's `latest` names step 2, as a kill after step 4's rename leaves it; `--resume auto`
    takes it (an explicit `--resume` of step 2 would move step 4 into superseded/ first)."""
    base = tmp_path_factory.mktemp("resave")
    first, again = base / "run", base / "again"
    assert main(common(sample_manifest, first) + ["--stop-after", "4"]) == 0
    shutil.copytree(first, again)
    (again / "checkpoints" / "latest").write_text(STEP2)
    assert main(common(sample_manifest, again) + ["--resume", "auto", "--stop-after", "2"]) == 0
    return first, again


def test_a_step_saved_again_replaces_the_old_one_and_leaves_nothing_aside(runs):
    first, again = runs
    root = again / "checkpoints"
    assert (root / "latest").read_text() == STEP4 and damage(root / STEP4) is None
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []
    assert not (root / "superseded").exists()  # `latest` named step 2 by a kill: nothing was abandoned


def killed(runs, tmp_path: Path, point: str) -> tuple[Path, int, int]:
    """A copy of the first run as a kill at `point` of saving step 4 again leaves it: (run, the old
    folder's inode, the new one's), the new one being the step 4 the resumed copy saved."""
    first, again = runs
    out = tmp_path / "run"
    shutil.copytree(first, out)
    root = out / "checkpoints"
    new, old, aside = root / f".tmp-{STEP4}", root / STEP4, root / f".replaced-{STEP4}"
    shutil.copytree(again / "checkpoints" / STEP4, new)
    inodes = old.stat().st_ino, new.stat().st_ino
    if point == "writing":  # the new folder half written: its state.json (written last) not yet there
        (new / "state.json").unlink()
    if point in ("aside", "renamed in", "deleting old"):
        old.rename(aside)
    if point in ("renamed in", "deleting old"):
        new.rename(old)
    if point == "deleting old":  # `latest` moved (it already named step 4), the old folder half deleted
        (aside / "encoder.safetensors").unlink()
    return out, *inodes


@pytest.mark.parametrize("point, kept", [("writing", "old"), ("aside", "new"), ("renamed in", "new"),
                                         ("deleting old", "new")])
def test_a_kill_at_any_point_of_a_save_again_leaves_the_step_and_latest(runs, tmp_path, point, kept):
    out, old, new = killed(runs, tmp_path, point)
    root = out / "checkpoints"
    assert resume_point(out, "auto") == root / STEP4  # what the CLI and the engine ask first
    remove_stale_temps(out)  # the engine's start-up clean-up
    assert (root / "latest").read_text() == STEP4
    assert damage(root / STEP4) is None and (root / STEP4).stat().st_ino == (new if kept == "new" else old)
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []


def test_the_old_step_comes_back_when_the_new_one_is_not_complete(runs, tmp_path, caplog):
    out, old, _ = killed(runs, tmp_path, "aside")
    root = out / "checkpoints"
    (root / f".tmp-{STEP4}" / "state.json").unlink()  # not a state a save leaves: the new one cannot be trusted
    with caplog.at_level(logging.WARNING, logger="omniid"):
        assert newest_intact(out) == root / STEP4
    assert "the one it was to replace is back" in caplog.text
    assert (root / STEP4).stat().st_ino == old and (root / "latest").read_text() == STEP4


def test_resume_auto_after_a_kill_between_the_renames_goes_on_from_the_step(runs, sample_manifest, tmp_path, caplog):
    out, _, new = killed(runs, tmp_path, "aside")
    root = out / "checkpoints"
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert main(common(sample_manifest, out) + ["--resume", "auto", "--stop-after", "1"]) == 0
    said = f"{root / STEP4}: a save of this step again was interrupted; the new one, complete, is in place"
    assert said in caplog.text
    assert f"resumed from {root / STEP4} at step 4" in caplog.text
    assert (root / STEP4).stat().st_ino == new and (root / "latest").read_text() == "step-00000005"
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []
