"""omniid-train end to end on the tiny preset: logs, eval, checkpoints, exact resume, stopping on
a non-finite loss, and DDP with two CPU processes (gloo), each training on its own identities."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from omniid.cli import main
from omniid.encoder import OmniIDEncoder
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)

REPO = Path(__file__).resolve().parents[2]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records(out) if "loss" in r}


def test_cli_trains_logs_evaluates_and_saves(sample_manifest, tmp_path):
    out = tmp_path / "run"
    code = main(["--manifest", str(sample_manifest), "--preset", "tiny", "--stage", "mtd", "--out", str(out),
                 "--steps", "4", "--grad-accum", "2", "--batch-size", "4", "--eval-every", "2", "--save-every", "2"])
    assert code == 0
    log = records(out)
    train = [r for r in log if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert {"loss", "lr", "samples_per_s", "gpu_mem_gb", "samples"} <= set(train[0])
    assert train[-1]["samples"] == 4 * 2 * 4  # steps x micro-batches x identities
    assert train[0]["lr"] < train[1]["lr"] == 1e-3  # warmup (2 steps) to the peak, then cosine decay
    assert train[1]["lr"] >= train[2]["lr"] > train[3]["lr"]
    # test.parquet beside the manifest, 2 identities: its batches shrink to fit
    assert [r["step"] for r in log if "eval_loss" in r] == [2, 4]
    latest = out / "checkpoints" / (out / "checkpoints" / "latest").read_text()
    assert latest.name == "step-00000004"
    encoder = OmniIDEncoder.from_pretrained(latest)
    assert encoder.encode(_three_crops(sample_manifest)).shape == (16, 64)
    with safe_open(str(latest / "optimizer.safetensors"), "pt") as f:
        assert any(k.endswith("exp_avg") for k in f.keys())


def _three_crops(manifest: Path) -> list[Path]:
    from omniid.data import load_manifest

    faces = next(iter(load_manifest(manifest).values()))
    return [crop for crop, _ in faces[:3]]


@pytest.mark.parametrize("accum", [1, 2])  # 2: a step reads 2 batches, so a resume starts at batch 2 x step
def test_resume_gives_the_same_next_losses(sample_manifest, tmp_path, accum):
    common = ["--manifest", str(sample_manifest), "--preset", "tiny", "--steps", "6", "--save-every", "3",
              "--eval-every", "100", "--grad-accum", str(accum)]
    assert main(common + ["--out", str(tmp_path / "straight")]) == 0
    assert main(common + ["--out", str(tmp_path / "split"), "--stop-after", "3"]) == 0
    assert max(losses(tmp_path / "split")) == 3
    assert main(common + ["--out", str(tmp_path / "split"), "--resume", "auto"]) == 0
    straight, split = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert sorted(split) == list(range(1, 7))
    assert [split[s] for s in (4, 5, 6)] == [straight[s] for s in (4, 5, 6)]
    assert len(set(straight.values())) == 6  # the losses do move, so equality means something


def test_non_finite_loss_stops_training(sample_manifest, tmp_path):
    out = tmp_path / "nan"
    code = main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(out), "--steps", "5",
                 "--lr", "inf", "--warmup-steps", "0", "--save-every", "100", "--eval-every", "100"])
    assert code == 2
    logged = losses(out) if (out / "log.jsonl").exists() else {}
    assert len(logged) < 5
    assert not (out / "checkpoints").exists()


def test_bad_manifest_is_reported_not_raised(sample_manifest, tmp_path, caplog):
    code = main(["--manifest", str(tmp_path / "absent.parquet"), "--preset", "tiny", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "manifest not found" in caplog.text


DDP_FLAGS = ["--steps", "2", "--mask-ratio", "0", "--save-every", "1", "--eval-every", "100"]


@pytest.fixture(scope="module")  # one launch (~45 s on 2 cores) for both DDP tests
def ddp_run(sample_manifest, tmp_path_factory) -> Path:
    """One tiny run of 2 steps under torch.distributed.run: 2 CPU processes (gloo), 2 identities
    each a step. --mask-ratio 0: MTD's masks are drawn per rank, so only without them is a step a
    function of the step's identities alone (test_each_process_trains_on_its_own_identities)."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "train"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "omniid",
         "--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(out), *DDP_FLAGS,
         "--batch-size", "2"],
        capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_ddp_with_two_cpu_processes(ddp_run):
    train = [r for r in records(ddp_run) if "loss" in r]
    assert [r["world"] for r in train] == [2, 2]
    assert train[-1]["samples"] == 2 * 2 * 2  # steps x processes x identities
    checkpoint = ddp_run / "checkpoints" / "step-00000002"
    with safe_open(str(checkpoint / "rng.safetensors"), "pt") as f:
        assert {k.split(".")[0] for k in f.keys()} == {"rank0", "rank1"}
    first, second = json.loads((checkpoint / "state.json").read_text())["weight_checksums"]
    assert first == second  # gradients were averaged: both ranks hold the same weights


def test_each_process_trains_on_its_own_identities(ddp_run, sample_manifest, tmp_path):
    """A DDP step over 2 processes x 2 identities is one step over the 4 identities of its global
    batch: the same loss and weights as one process reading them as 2 micro-batches (--grad-accum 2:
    rank r's slice of global batch g is the one process's batch 2g + r, the same draws, while the
    epochs match: the sample's 4 identities are one global batch, or two of one process's). Had each
    rank trained on rank 0's identities, the step would be that of 2 identities, twice."""
    one = tmp_path / "one"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(one), *DDP_FLAGS,
                 "--batch-size", "2", "--grad-accum", "2"]) == 0
    # the logged loss is the mean over the ranks' micro-batches, the one process's over its two
    assert losses(ddp_run) == pytest.approx(losses(one), rel=1e-6)
    for step in ("step-00000001", "step-00000002"):
        ddp, single = (_weights(run / "checkpoints" / step) for run in (ddp_run, one))
        assert ddp.keys() == single.keys()
        worst = max((ddp[k] - single[k]).abs().max().item() for k in ddp)
        assert worst < 1e-5, f"{step}: weights differ by up to {worst} from one process over the same identities"


def _weights(checkpoint: Path) -> dict:
    """Every trained tensor of an MTD checkpoint (the encoder's and the decoder's)."""
    from safetensors.torch import load_file

    return {f"{f.name}:{k}": v for f in sorted(checkpoint.glob("*.safetensors"))
            if f.name not in ("optimizer.safetensors", "rng.safetensors") for k, v in load_file(str(f)).items()}


def test_a_checkpoint_that_gives_a_non_finite_loss_is_set_aside_and_resume_works(sample_manifest, tmp_path, caplog):
    out = tmp_path / "blowup"
    common = ["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(out), "--steps", "6",
              "--save-every", "1", "--eval-every", "100"]
    assert main(common + ["--stop-after", "2"]) == 0
    # step 3 with lr 1e30: its loss is finite, its weights (about 1e30) give a non-finite loss at step 4
    assert main(common + ["--resume", "auto", "--lr", "1e30", "--warmup-steps", "0"]) == 2
    assert max(losses(out)) == 3
    message = next(r.getMessage() for r in caplog.records if "loss is" in r.getMessage())
    assert "at step 4;" in message and "step-00000003 gives this loss again whatever the lr" in message
    assert "checkpoints/latest names step-00000002" in message
    assert (out / "checkpoints" / "non-finite" / "step-00000003").is_dir()
    assert (out / "checkpoints" / "latest").read_text() == "step-00000002"
    assert main(common + ["--resume", "auto"]) == 0
    assert [r["step"] for r in records(out) if "loss" in r] == [1, 2, 3, 4, 5, 6]  # each step once
    assert all(math.isfinite(loss) for loss in losses(out).values())


def test_each_record_says_how_many_steps_its_loss_averages(sample_manifest, tmp_path):
    """A stop logs its last step, so the next record after a resume averages fewer steps than
    --log-every: loss_steps says how many, and the two runs' records are comparable through it."""
    common = ["--manifest", str(sample_manifest), "--preset", "tiny", "--steps", "4", "--log-every", "4",
              "--eval-every", "100"]
    assert main(common + ["--out", str(tmp_path / "straight")]) == 0
    assert main(common + ["--out", str(tmp_path / "split"), "--stop-after", "3"]) == 0
    assert main(common + ["--out", str(tmp_path / "split"), "--resume", "auto"]) == 0
    steps = {name: [(r["step"], r["loss_steps"]) for r in records(tmp_path / name) if "loss" in r]
             for name in ("straight", "split")}
    assert steps == {"straight": [(4, 4)], "split": [(3, 3), (4, 1)]}
