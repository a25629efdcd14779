"""Resuming from checked checkpoints: a damaged or incomplete `latest` (a file cut short, bytes
flipped, a file missing, `latest` naming a folder that is gone) is named, moved aside and the run
resumes from the newest intact one, logging each step once."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from omniid.cli import main
from omniid.recovery import newest_intact
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)

STEP2, STEP4 = "step-00000002", "step-00000004"


def common(manifest: Path, out: Path) -> list[str]:
    return ["--manifest", str(manifest), "--preset", "tiny", "--out", str(out), "--steps", "6", "--save-every", "2",
            "--eval-every", "100"]


@pytest.fixture(scope="module")
def four_steps(sample_manifest, tmp_path_factory) -> Path:
    """A run stopped after 4 of 6 steps, with checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("recovery") / "run"
    assert main(common(sample_manifest, out) + ["--stop-after", "4"]) == 0
    return out


def logged(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def harm(out: Path, how: str) -> None:
    step = out / "checkpoints" / STEP4
    encoder = step / "encoder.safetensors"
    data = bytearray(encoder.read_bytes())
    if how == "truncated":
        encoder.write_bytes(data[: len(data) // 2])
    elif how == "flipped":  # 4 KB of tensor bytes, past the header: the file still loads
        start = len(data) // 2
        data[start:start + 4096] = bytes(b ^ 0xFF for b in data[start:start + 4096])
        encoder.write_bytes(data)
    elif how == "missing":
        (step / "optimizer.safetensors").unlink()
    elif how == "pointer":  # `latest` names a step folder that is not there
        (out / "checkpoints" / "latest").write_text("step-00000006")


@pytest.mark.parametrize("how, problem, taken", [
    ("truncated", "encoder.safetensors has", STEP2),
    ("flipped", "encoder.safetensors does not match the SHA-256 recorded when it was saved", STEP2),
    ("missing", "optimizer.safetensors is missing", STEP2),
    ("pointer", "names step-00000006, which does not exist", STEP4),
])
def test_a_damaged_latest_is_named_set_aside_and_the_newest_intact_one_taken(four_steps, tmp_path, caplog,
                                                                             how, problem, taken):
    out = tmp_path / "run"
    shutil.copytree(four_steps, out)
    harm(out, how)
    with caplog.at_level(logging.WARNING, logger="omniid"):
        found = newest_intact(out)
    assert found == out / "checkpoints" / taken
    assert problem in caplog.text and f"resuming from {found}, the newest intact checkpoint" in caplog.text
    assert (out / "checkpoints" / "latest").read_text() == taken
    if taken == STEP2:  # moved aside, never deleted
        assert f"checkpoint {out / 'checkpoints' / STEP4} is damaged" in caplog.text
        assert (out / "checkpoints" / "damaged" / STEP4 / "encoder.safetensors").is_file()


def test_resume_auto_goes_on_from_the_newest_intact_checkpoint_and_logs_each_step_once(
        sample_manifest, four_steps, tmp_path, caplog):
    out = tmp_path / "run"
    shutil.copytree(four_steps, out)
    before = {r["step"]: r["loss"] for r in logged(four_steps) if "loss" in r}
    harm(out, "truncated")
    with caplog.at_level(logging.WARNING, logger="omniid"):
        assert main(common(sample_manifest, out) + ["--resume", "auto"]) == 0
    assert f"{STEP4} is damaged (encoder.safetensors has" in caplog.text
    assert f"resuming from {out / 'checkpoints' / STEP2}" in caplog.text
    records = [r for r in logged(out) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]  # steps 3 and 4 replayed, logged once
    assert [r["loss"] for r in records[:4]] == [before[s] for s in (1, 2, 3, 4)]
    assert (out / "checkpoints" / "latest").read_text() == "step-00000006"


def test_a_damaged_checkpoint_named_by_resume_is_an_error(sample_manifest, four_steps, tmp_path, caplog):
    out = tmp_path / "run"
    shutil.copytree(four_steps, out)
    harm(out, "flipped")
    step = out / "checkpoints" / STEP4
    assert main(common(sample_manifest, out) + ["--resume", str(step)]) == 2
    assert f"{step}: a damaged checkpoint (encoder.safetensors does not match the SHA-256" in caplog.text
