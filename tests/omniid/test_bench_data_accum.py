"""omniid-bench-data with gradient accumulation: one optimizer step takes --grad-accum micro-batches
of the stage's batch, so a GPU at a stated optimizer step rate asks the loaders for that many times
the batch's identities, and the report names which rate is which."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from omniid.bench_data import main as bench_main
from omniid.config import PRESETS
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)


@pytest.fixture
def accum_preset(monkeypatch):
    """`tiny` with 3 micro-batches an optimizer step in both stages: a preset as a user would register."""
    tiny = PRESETS["tiny"]
    preset = replace(tiny, name="tiny-accum3", optim=replace(tiny.optim, grad_accum=3),
                     flow_optim=replace(tiny.flow_optim, grad_accum=3))
    monkeypatch.setitem(PRESETS, preset.name, preset)
    return preset


def bench(sample_manifest, capsys, *flags) -> dict[str, dict]:
    assert bench_main(["--manifest", str(sample_manifest), "--items", "2", "--workers", "0", *flags]) == 0
    return {r["stage"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}


def test_a_stated_optimizer_step_rate_asks_for_every_micro_batchs_identities(sample_manifest, capsys, accum_preset):
    records = bench(sample_manifest, capsys, "--preset", accum_preset.name, "--mtd-steps-per-s", "10",
                    "--flow-steps-per-s", "1")
    for stage, steps in (("mtd", 10.0), ("flow", 1.0)):
        r, batch = records[stage], accum_preset.for_stage(stage).data.batch_size
        assert r["assumed_items_per_s_per_gpu"] == pytest.approx(steps * batch * 3), stage
        assert r["loader_cores_per_gpu_at_assumed_rate"] == pytest.approx(steps * batch * 3 * r["cpu_ms_per_item"] / 1000)
        shape = (r["grad_accum"], r["identities_per_micro_batch"], r["identities_per_optimizer_step"])
        assert shape == (3, batch, 3 * batch)
        assert r["assumed_optimizer_steps_per_s"] == steps and r["assumed_micro_batches_per_s"] == 3 * steps
        assert r["step_rate_from"] == f"--{stage}-steps-per-s"


def test_the_default_rate_is_per_micro_batch_so_accumulating_asks_for_no_more_items(sample_manifest, capsys):
    """Left to its default, the step rate is the GPU's micro-batch rate over --grad-accum: the same
    identities/s at 1 and 4 micro-batches a step (accumulating does not make a GPU faster)."""
    one = bench(sample_manifest, capsys, "--preset", "tiny", "--stages", "mtd")["mtd"]
    four = bench(sample_manifest, capsys, "--preset", "tiny", "--stages", "mtd", "--grad-accum", "4")["mtd"]
    assert four["assumed_items_per_s_per_gpu"] == pytest.approx(one["assumed_items_per_s_per_gpu"])
    assert four["assumed_optimizer_steps_per_s"] == pytest.approx(one["assumed_optimizer_steps_per_s"] / 4)
    assert four["identities_per_optimizer_step"] == 4 * one["identities_per_optimizer_step"]
    assert four["step_rate_from"] == "default micro-batches/s over grad_accum"


def test_a_grad_accum_under_one_is_refused(sample_manifest, capsys):
    with pytest.raises(SystemExit):
        bench_main(["--manifest", str(sample_manifest), "--grad-accum", "0"])
    assert "--grad-accum takes at least 1" in capsys.readouterr().err
