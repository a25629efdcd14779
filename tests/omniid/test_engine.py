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


DDP_FLAGS = ["--steps", "2", "--save-every", "1", "--eval-every", "100"]  # MTD's 95% masking on


@pytest.fixture(scope="module")  # one launch (~45 s on 2 cores) for both DDP tests
def ddp_run(sample_manifest, tmp_path_factory) -> Path:
    """One tiny run of 2 steps under torch.distributed.run: 2 CPU processes (gloo), 2 identities
    each a step, each item's MTD masks its own (`omniid.draws.item_key`: of seed and draw index)."""
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


@pytest.fixture(scope="module")
def one_process(sample_manifest, tmp_path_factory) -> Path:
    """The DDP run's 2 steps in one process: each step's 4 identities as 2 micro-batches of 2."""
    out = tmp_path_factory.mktemp("one") / "run"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(out), *DDP_FLAGS,
                 "--batch-size", "2", "--grad-accum", "2"]) == 0
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


def test_each_process_trains_on_its_own_identities_with_their_own_masks(ddp_run, one_process):
    """A DDP step over 2 processes x 2 identities is one step over the 4 identities of its global
    batch: the same loss and weights as one process reading them as 2 micro-batches (--grad-accum 2:
    rank r's slice of global batch g is the one process's batch 2g + r, the same draws, while the
    epochs match: the sample's 4 identities are one global batch, or two of one process's), masks
    included: an item's are drawn from its own key, not from its process's or micro-batch's place.
    Had each rank trained on rank 0's identities, the step would be that of 2 identities, twice;
    had both ranks drawn the same masks (or masks keyed by rank), rank 1's would not be the one
    process's second micro-batch's (1 patch of 16 visible: the loss depends on which)."""
    # the logged loss is the mean over the ranks' micro-batches, the one process's over its two
    assert losses(ddp_run) == pytest.approx(losses(one_process), rel=1e-6)
    _same_weights(ddp_run, one_process)


def test_a_step_is_the_same_however_its_items_are_split(one_process, sample_manifest, tmp_path):
    """--batch-size 4 in one micro-batch: the same items as 2 micro-batches of 2, and the same
    masks (each item's own), so the same losses and weights."""
    whole = tmp_path / "whole"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(whole), *DDP_FLAGS,
                 "--batch-size", "4"]) == 0
    assert losses(whole) == pytest.approx(losses(one_process), rel=1e-6)
    _same_weights(whole, one_process)


def test_the_ranks_of_a_step_draw_different_masks_each_items_own(sample_manifest, one_torch_thread):
    """What the comparisons above cannot see: masks that were the same for every item (keyed by the
    step alone) would agree between the runs all the same. The first global batch's two rank slices
    (world 2), read as omniid-train reads them: other identities, other masks, and each slice's
    masks those of the same items read by one process (its batch r), whenever they are drawn."""
    import torch

    from omniid.config import get_preset
    from omniid.data import build_loader
    from omniid.objectives import build_objective

    preset, data = get_preset("tiny", stage="mtd"), get_preset("tiny", stage="mtd").data
    model = build_objective("mtd", preset).eval()

    def first(rank: int, world: int, start: int) -> dict:
        return next(iter(build_loader(sample_manifest, preset.model.image_size, data.num_inputs, data.num_targets,
                                      2, 0, preset.seed, rank, world, start_batch=start)))

    ranks, one = [first(r, 2, 0) for r in (0, 1)], [first(0, 1, r) for r in (0, 1)]
    assert [b["identity"] for b in ranks] == [b["identity"] for b in one]
    assert not set(ranks[0]["identity"]) & set(ranks[1]["identity"])
    with torch.no_grad():  # no generator: the items' own keys
        masked = [model(batch).aux["masked"] for batch in ranks]
        assert all(torch.equal(m, model(b).aux["masked"]) for m, b in zip(masked, one))
    assert masked[0].shape == (2 * data.num_targets, 16) and (masked[0].sum(dim=1) == 15).all()  # 95% of 16
    assert not torch.equal(masked[0], masked[1])


def _same_weights(run: Path, other: Path) -> None:
    for step in ("step-00000001", "step-00000002"):
        ours, theirs = (_weights(r / "checkpoints" / step) for r in (run, other))
        assert ours.keys() == theirs.keys()
        worst = max((ours[k] - theirs[k]).abs().max().item() for k in ours)
        assert worst < 1e-5, f"{step}: weights differ by up to {worst} from the other run over the same identities"


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
