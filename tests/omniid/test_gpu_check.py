"""The one-command GPU check runs its real code path on the tiny preset on CPU (the paper's
figures need a GPU: the test marked `gpu` runs them where one is present)."""
from __future__ import annotations

import json

import pytest
import torch

from omniid.gpu_check import main, random_weight_preset


def test_it_reports_one_line_per_stage_with_the_trainers_own_step(capsys):
    assert main(["--preset", "tiny", "--device", "cpu", "--steps", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["stage"] for r in lines] == ["mtd", "flow"]
    for record in lines:
        assert record["s_per_step"] > 0 and record["samples_per_s"] > 0 and record["trainable_params"] > 0
    assert lines[1]["frozen_params"] > 0  # FLUX and the VAE are frozen


def test_the_paper_check_uses_flux_dev_configs_at_the_papers_batch_per_gpu():
    from omniid.config import get_preset

    preset = random_weight_preset("paper", "flow", None)
    assert preset.flow.transformer["num_layers"] == 19 and preset.flow.flux_path is None
    assert preset.data.batch_size == get_preset("paper", stage="flow").data.batch_size
    assert random_weight_preset("paper", "mtd", 2).data.batch_size == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message is for machines without a GPU")
def test_without_a_gpu_it_says_so(capsys):
    assert main([]) == 2
    assert "no CUDA device here" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_paper_steps_fit_one_gpu(capsys):
    assert main(["--steps", "1"]) == 0
    for record in map(json.loads, capsys.readouterr().out.splitlines()):
        assert not record.get("oom"), record


def test_an_unknown_stage_is_refused_naming_the_stages(capsys):
    """A misspelt stage stops before any model is built: exit 2 and one line naming the valid ones."""
    with pytest.raises(SystemExit) as stopped:
        main(["--stages", "mdt", "--preset", "tiny", "--device", "cpu"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err
    assert "--stages mdt: no stage mdt; the stages are mtd,flow" in err


def test_each_timed_step_is_the_trainers_own_gradient_clipping_included(capsys, monkeypatch):
    """s_per_step times the trainer's optimizer step, which clips the gradients (the preset's
    grad_clip 1.0): the warm-up step and the 2 timed ones each clip once. samples_per_s is this
    one GPU's identities over that time."""
    clipped = []
    clip = torch.nn.utils.clip_grad_norm_

    def counted(parameters, max_norm, *args, **kwargs):
        clipped.append(max_norm)
        return clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", counted)
    assert main(["--preset", "tiny", "--device", "cpu", "--steps", "2", "--stages", "mtd"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert clipped == [1.0] * 3
    assert record["samples_per_s"] == pytest.approx(record["identities_per_gpu"] / record["s_per_step"])
