"""omniid-train on an --out that already holds a run: it continues (same options), refuses
(other options, each named with both values) or starts over (--restart), and never replaces or
deletes a checkpoint another run started from (--init-from)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from omniid.cli import main
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)


def args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["--manifest", str(manifest), "--preset", "tiny", "--out", str(out), "--steps", "4", "--save-every", "2",
            "--eval-every", "100", *extra]


def logged_steps(out: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]


def test_the_same_command_again_continues_an_interrupted_run_and_a_finished_one_trains_nothing(
        sample_manifest, tmp_path, caplog):
    whole, out = tmp_path / "whole", tmp_path / "run"
    assert main(args(sample_manifest, whole)) == 0
    assert main(args(sample_manifest, out, "--stop-after", "2")) == 0
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert main(args(sample_manifest, out)) == 0  # no --resume: it continues all the same
    assert f"resumed from {out / 'checkpoints' / 'step-00000002'} at step 2" in caplog.text
    assert logged_steps(out) == [1, 2, 3, 4]
    assert losses(out) == losses(whole)  # as if never interrupted
    step4 = out / "checkpoints" / "step-00000004" / "state.json"
    saved_at = step4.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert main(args(sample_manifest, out)) == 0
    assert f"{out} is already complete at step 4 of 4: nothing to train" in caplog.text
    assert logged_steps(out) == [1, 2, 3, 4] and step4.stat().st_mtime_ns == saved_at


def test_other_options_on_the_same_out_are_refused_naming_each(sample_manifest, tmp_path, caplog):
    out = tmp_path / "run"
    assert main(args(sample_manifest, out, "--stop-after", "2")) == 0
    before = (out / "log.jsonl").read_text()
    assert main(args(sample_manifest, out, "--lr", "0.002", "--mask-ratio", "0.85")) == 2
    assert (f"{out} holds a run made with other options: model.mask_ratio 0.95 (this command: 0.85); "
            f"optim.lr 0.001 (this command: 0.002). Run the same options to continue it, --restart to start it "
            f"over, or give another --out") in caplog.text
    assert (out / "log.jsonl").read_text() == before
    # options that do not change what is trained may differ
    assert main(args(sample_manifest, out, "--log-every", "2", "--keep-checkpoints", "5")) == 0
    assert logged_steps(out)[-1] == 4


def test_restart_starts_over_unless_another_run_started_from_a_checkpoint(sample_manifest, tmp_path, caplog):
    out, flow = tmp_path / "mtd", tmp_path / "flow"
    assert main(args(sample_manifest, out)) == 0
    assert main(args(sample_manifest, out, "--lr", "0.002", "--restart")) == 0
    assert logged_steps(out) == [1, 2, 3, 4]
    assert json.loads((out / "preset.json").read_text())["optim"]["lr"] == 0.002
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--stage", "flow", "--init-from", str(out),
                 "--out", str(flow), "--steps", "1", "--eval-every", "100"]) == 0
    caplog.clear()
    assert main(args(sample_manifest, out, "--restart")) == 2
    assert (f"{out}: --restart would delete checkpoints other runs started from (step-00000004 by "
            f"{flow.resolve()}); start over in another --out") in caplog.text
    assert (out / "checkpoints" / "step-00000004" / "encoder.safetensors").is_file()


def test_a_checkpoint_another_run_started_from_is_never_replaced(sample_manifest, tmp_path, caplog):
    out, flow = tmp_path / "mtd", tmp_path / "flow"
    assert main(args(sample_manifest, out)) == 0
    step4 = out / "checkpoints" / "step-00000004"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--stage", "flow", "--init-from", str(step4),
                 "--out", str(flow), "--steps", "1", "--eval-every", "100"]) == 0
    encoder = (step4 / "encoder.safetensors").read_bytes()
    # going back to step 2 would save step 4 again, over the one the flow run started from
    assert main(args(sample_manifest, out, "--resume", str(out / "checkpoints" / "step-00000002"))) == 2
    assert (f"{step4}: {flow.resolve()} started from this checkpoint (--init-from), so it is not replaced; "
            "train into another --out") in caplog.text
    assert (step4 / "encoder.safetensors").read_bytes() == encoder
