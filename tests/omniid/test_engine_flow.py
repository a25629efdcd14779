"""The two-stage schedule through omniid-train on the tiny preset: mtd, then flow --init-from it
(the encoder carried bit for bit), flow checkpoints (adapter loadable alone), exact flow resume,
clear errors for a bad --init-from and for missing FLUX weights, and the CLI's habits."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from omniid.adapter import OmniIDAdapter
from omniid.cli import main
from omniid.data import load_manifest
from omniid.encoder import OmniIDEncoder
from omniid.flux import load_flow_run, sample
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)


def losses(out: Path) -> dict[int, float]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def flow_args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["--manifest", str(manifest), "--preset", "tiny", "--stage", "flow", "--out", str(out),
            "--eval-every", "100", *extra]


@pytest.fixture(scope="module")
def mtd_run(sample_manifest, tmp_path_factory) -> Path:
    """An MTD ablation run (mask ratio 0.85): MTD-only settings do not block the hand-over."""
    out = tmp_path_factory.mktemp("mtd") / "run"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--stage", "mtd", "--out", str(out),
                 "--steps", "2", "--save-every", "2", "--eval-every", "100", "--mask-ratio", "0.85"]) == 0
    return out


def test_init_from_carries_the_encoder_bit_for_bit_and_drops_the_decoder(sample_manifest, mtd_run, tmp_path):
    out = tmp_path / "flow"
    # lr 0: the flow stage's first checkpoint must hold exactly the encoder it started from
    assert main(flow_args(sample_manifest, out, "--init-from", str(mtd_run), "--steps", "1", "--lr", "0")) == 0
    step = out / "checkpoints" / "step-00000001"
    source = mtd_run / "checkpoints" / "step-00000002"
    theirs, ours = load_file(str(source / "encoder.safetensors")), load_file(str(step / "encoder.safetensors"))
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    assert not (step / "decoder.safetensors").exists()
    state = json.loads((step / "state.json").read_text())
    assert state["stage"] == "flow" and state["init_from"] == str(source) and state["representation"] == "omniid"
    assert OmniIDAdapter.from_pretrained(out).config["num_tokens"] == 16   # the adapter alone, from the run
    assert OmniIDEncoder.from_pretrained(step).config.num_queries == 16
    assert (out / "prompt_embeds.safetensors").is_file()
    preset = json.loads((out / "preset.json").read_text())
    assert preset["stage"] == "flow" and preset["flow"]["guidance"] == 3.5


def test_a_flow_run_generates(sample_manifest, mtd_run, tmp_path):
    """What omniid-generate builds on: a run folder -> FLUX, prompt cache, adapter, encoder -> images."""
    out = tmp_path / "flow"
    assert main(flow_args(sample_manifest, out, "--init-from", str(mtd_run), "--steps", "2")) == 0
    run = load_flow_run(out / "checkpoints" / "latest")
    assert run.checkpoint.name == "step-00000002" and run.adapter.config["num_blocks"] == 2
    encoder = OmniIDEncoder.from_pretrained(run.checkpoint)
    crops = [crop for crop, _ in next(iter(load_manifest(sample_manifest).values()))[:3]]
    tokens = encoder.encode(crops)[None]
    images = sample(run.parts, run.prompt_embeds, run.pooled_prompt_embeds, tokens, run.adapter,
                    height=32, width=32, guidance=run.flow.guidance, steps=2,
                    generator=torch.Generator().manual_seed(0))
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()


def test_flow_resume_gives_the_same_next_losses(sample_manifest, mtd_run, tmp_path):
    common = ["--init-from", str(mtd_run), "--steps", "4", "--save-every", "2"]
    assert main(flow_args(sample_manifest, tmp_path / "straight", *common)) == 0
    assert main(flow_args(sample_manifest, tmp_path / "split", *common, "--stop-after", "2")) == 0
    assert max(losses(tmp_path / "split")) == 2
    assert main(flow_args(sample_manifest, tmp_path / "split", *common, "--resume", "auto")) == 0
    straight, split = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert sorted(split) == [1, 2, 3, 4]
    assert [split[s] for s in (3, 4)] == [straight[s] for s in (3, 4)]
    assert len(set(straight.values())) == 4  # the losses do move, so equality means something


def test_a_flow_step_is_the_same_however_its_items_are_split(sample_manifest, mtd_run, tmp_path):
    """Two identities a step in one micro-batch, or in two of one (--grad-accum 2, as two DDP
    processes would read them): each item draws its own t and noise (its key: seed and draw
    index), so the steps' losses agree; drawn per micro-batch, they differed."""
    common = ["--init-from", str(mtd_run), "--steps", "2", "--save-every", "100"]
    assert main(flow_args(sample_manifest, tmp_path / "whole", *common, "--batch-size", "2")) == 0
    assert main(flow_args(sample_manifest, tmp_path / "split", *common, "--batch-size", "1", "--grad-accum", "2")) == 0
    whole, split = losses(tmp_path / "whole"), losses(tmp_path / "split")
    assert sorted(whole) == [1, 2]
    assert [split[s] for s in (1, 2)] == pytest.approx([whole[s] for s in (1, 2)], rel=1e-6)


def test_bad_init_from_names_the_path(sample_manifest, mtd_run, tmp_path, caplog):
    absent = tmp_path / "no-such-run"
    assert main(flow_args(sample_manifest, tmp_path / "a", "--init-from", str(absent), "--steps", "1")) == 2
    assert str(absent) in caplog.text
    caplog.clear()
    other = tmp_path / "other-preset"
    shutil.copytree(mtd_run / "checkpoints" / "step-00000002", other)
    config = json.loads((other / "config.json").read_text())
    config["model"]["width"] = 1280
    (other / "config.json").write_text(json.dumps(config))
    state = json.loads((other / "state.json").read_text())
    (other / "state.json").write_text(json.dumps({**state, "preset": "paper"}))
    assert main(flow_args(sample_manifest, tmp_path / "b", "--init-from", str(other), "--steps", "1")) == 2
    assert str(other) in caplog.text and "preset paper" in caplog.text and "width" in caplog.text


def test_flow_resume_refuses_an_mtd_run_folder(sample_manifest, mtd_run, caplog):
    assert main(flow_args(sample_manifest, mtd_run, "--resume", "auto", "--steps", "3")) == 2
    assert "mtd checkpoint" in caplog.text and "--init-from" in caplog.text


def test_paper_flow_without_flux_says_what_is_missing_and_how_to_fix_it(sample_manifest, tmp_path, caplog,
                                                                        monkeypatch):
    monkeypatch.delenv("OMNIID_FLUX_PATH", raising=False)
    flux = tmp_path / "flux"
    code = main(["--manifest", str(sample_manifest), "--preset", "paper", "--stage", "flow",
                 "--out", str(tmp_path / "p"), "--flux-path", str(flux)])
    assert code == 2
    assert f"FLUX folder {flux}: does not exist" in caplog.text
    assert "--flux-path" in caplog.text and "--preset tiny" in caplog.text
    caplog.clear()
    flux.mkdir()  # there, but empty: each missing file is named
    assert main(["--manifest", str(sample_manifest), "--preset", "paper", "--stage", "flow",
                 "--out", str(tmp_path / "p"), "--flux-path", str(flux)]) == 2
    assert str(flux) in caplog.text and "transformer/config.json" in caplog.text and "--preset tiny" in caplog.text


def test_version_and_help_show_defaults_and_weights(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("omniid-train ")
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # whatever the terminal's width
    assert "(default: tiny)" in text and "(default: mtd)" in text and "(default: omniid)" in text
    assert "FLUX.1-dev" in text and "--flux-path" in text and "tiny nothing" in text


@pytest.mark.slow
def test_flow_ddp_with_two_cpu_processes(sample_manifest, mtd_run, tmp_path):
    """The frozen FLUX is left out of DDP's broadcast and gradient sync; the trained parts agree,
    and the steps are one process's over the same identities as two micro-batches (each item's
    t and noise its own: `omniid.noise`)."""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(repo / "train"), str(repo), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "omniid",
         *flow_args(sample_manifest, out, "--init-from", str(mtd_run), "--steps", "2", "--batch-size", "1",
                    "--save-every", "2")],
        capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / "checkpoints" / "step-00000002" / "state.json").read_text())
    assert state["world"] == 2 and state["samples"] == 2 * 2 * 1
    first, second = state["weight_checksums"]
    assert first == second
    one = tmp_path / "one"
    assert main(flow_args(sample_manifest, one, "--init-from", str(mtd_run), "--steps", "2", "--batch-size", "1",
                          "--grad-accum", "2", "--save-every", "2")) == 0
    assert losses(out) == pytest.approx(losses(one), rel=1e-6)
