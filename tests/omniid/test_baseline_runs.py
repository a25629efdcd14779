"""Every representation through omniid-train's flow stage on the tiny preset: a resumed run gives
the same next losses as an uninterrupted one; the baselines' convergence rule stops a run and
records why."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from omniid.cli import main
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)

REPRESENTATIONS = ("omniid", "clip", "arcface", "arcface+clip")


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records(out) if "loss" in r}


def flow_args(manifest: Path, out: Path, representation: str, *extra: str) -> list[str]:
    return ["--manifest", str(manifest), "--preset", "tiny", "--stage", "flow", "--out", str(out),
            "--representation", representation, "--eval-every", "100", *extra]


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_resume_gives_the_same_next_losses(sample_manifest, tmp_path, representation):
    common = ["--steps", "4", "--save-every", "2", "--batch-size", "1"]
    assert main(flow_args(sample_manifest, tmp_path / "straight", representation, *common)) == 0
    assert main(flow_args(sample_manifest, tmp_path / "split", representation, *common, "--stop-after", "2")) == 0
    assert max(losses(tmp_path / "split")) == 2
    assert main(flow_args(sample_manifest, tmp_path / "split", representation, *common, "--resume", "auto")) == 0
    straight, split = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert sorted(split) == [1, 2, 3, 4]
    assert [split[s] for s in (3, 4)] == [straight[s] for s in (3, 4)]
    assert len(set(straight.values())) == 4  # the losses do move, so equality means something


def test_the_convergence_rule_stops_a_baseline_and_says_why(sample_manifest, tmp_path):
    """lr 0: the eval loss never falls, so with patience 2 the run stops at the third evaluation
    (step 3 of a 20-step cap), saves there and records why; a resumed run stops at the same step."""
    common = ["--steps", "20", "--save-every", "2", "--batch-size", "1", "--lr", "0", "--patience", "2",
              "--eval-every", "1"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(flow_args(sample_manifest, straight, "clip", *common)) == 0
    assert max(losses(straight)) == 3
    stops = [r for r in records(straight) if "stopped" in r]
    assert [r["step"] for r in stops] == [3] and "converged at step 3" in stops[0]["stopped"]
    assert stops[0]["convergence"]["best_step"] == 1 and "eval_loss" in stops[0]["stopped"]
    latest = straight / "checkpoints" / (straight / "checkpoints" / "latest").read_text()
    state = json.loads((latest / "state.json").read_text())
    assert latest.name == "step-00000003" and state["convergence"]["stopped"] == stops[0]["stopped"]
    preset = json.loads((straight / "preset.json").read_text())
    assert preset["convergence"]["patience"] == 2 and preset["optim"]["total_steps"] == 20

    assert main(flow_args(sample_manifest, split, "clip", *common, "--stop-after", "2")) == 0
    assert main(flow_args(sample_manifest, split, "clip", *common, "--resume", "auto")) == 0
    assert max(losses(split)) == 3 and [r["step"] for r in records(split) if "stopped" in r] == [3]
    assert main(flow_args(sample_manifest, split, "clip", *common, "--resume", "auto")) == 0  # converged: no step
    assert max(losses(split)) == 3


def test_the_convergence_rule_needs_its_eval_set(sample_manifest, tmp_path, caplog):
    lone = tmp_path / "lone"
    lone.mkdir()
    for name in ("train.parquet", "manifest.json"):
        (lone / name).write_bytes((sample_manifest.parent / name).read_bytes())
    assert main(flow_args(lone / "train.parquet", tmp_path / "run", "clip", "--steps", "2")) == 2
    assert "convergence rule watches the eval loss" in caplog.text and "--patience 0" in caplog.text


def test_a_baseline_takes_no_init_from(sample_manifest, tmp_path, caplog):
    assert main(flow_args(sample_manifest, tmp_path / "run", "arcface", "--init-from", str(tmp_path))) == 2
    assert "--init-from takes an Omni-ID encoder" in caplog.text


@pytest.mark.slow
def test_the_convergence_rule_stops_every_rank_together(sample_manifest, tmp_path):
    """Only rank 0 evaluates; its decision stops rank 1 at the same step (no rank left waiting)."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(repo / "train"), str(repo), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "ddp"
    args = flow_args(sample_manifest, out, "clip", "--steps", "20", "--save-every", "5", "--batch-size", "1",
                     "--lr", "0", "--patience", "2", "--eval-every", "1")  # the last --eval-every counts
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "omniid", *args], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert max(losses(out)) == 3
    state = json.loads((out / "checkpoints" / "step-00000003" / "state.json").read_text())
    assert state["world"] == 2 and "converged at step 3" in state["convergence"]["stopped"]
