"""The adapter stage (Table 1's setting) on the tiny preset: a frozen representation, a ControlNet
fed each target's landmark image and the IP-Adapter on a tiny random FLUX; it trains, resumes
exactly, and its checkpoint drives omniid-eval's Table 1-like rows."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from omniid.cli import main
from omniid.controlnet_generation import ControlNetGenerator
from omniid.eval_cli import eval_main
from omniid.eval_setting import CONTROLNET, DECODER_ONLY
from omniid.flux.controlnet import sample_controlled
from omniid.landmarks import landmark_tensor, landmarks_by_crop
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)


def losses(out: Path) -> dict[int, float]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def train(manifest: Path, out: Path, stage: str, *extra: str) -> int:
    return main(["--manifest", str(manifest), "--preset", "tiny", "--stage", stage, "--out", str(out),
                 "--eval-every", "100", "--batch-size", "1", *extra])


@pytest.fixture(scope="module")
def mtd_run(sample_manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mtd") / "run"
    assert train(sample_manifest, out, "mtd", "--steps", "2", "--save-every", "2") == 0
    return out


@pytest.fixture(scope="module")
def adapter_run(sample_manifest, mtd_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adapter") / "run"
    # lr 1e-2: three steps move the zero-initialised control path enough to show in generations
    assert train(sample_manifest, out, "adapter", "--init-from", str(mtd_run), "--steps", "3", "--save-every", "3",
                 "--lr", "1e-2") == 0
    return out


def test_the_stage_trains_the_controlnet_and_adapter_and_keeps_the_encoder(mtd_run, adapter_run):
    step = adapter_run / "checkpoints" / "step-00000003"
    state = json.loads((step / "state.json").read_text())
    assert state["stage"] == "adapter" and state["representation"] == "omniid"
    assert {"controlnet.safetensors", "controlnet_config.json", "adapter.safetensors"} <= set(state["files"])
    source = load_file(str(mtd_run / "checkpoints" / "step-00000002" / "encoder.safetensors"))
    frozen = load_file(str(step / "encoder.safetensors"))
    assert frozen.keys() == source.keys() and all(torch.equal(frozen[k], source[k]) for k in source)
    controlnet = load_file(str(step / "controlnet.safetensors"))
    assert controlnet["controlnet_x_embedder.weight"].abs().sum() > 0  # trained off its zero start
    assert all(np.isfinite(v) for v in losses(adapter_run).values()) and max(losses(adapter_run)) == 3


def test_the_stage_resumes_with_the_same_next_losses(sample_manifest, mtd_run, tmp_path):
    common = ["--init-from", str(mtd_run), "--steps", "4", "--save-every", "2"]
    assert train(sample_manifest, tmp_path / "straight", "adapter", *common) == 0
    assert train(sample_manifest, tmp_path / "split", "adapter", *common, "--stop-after", "2") == 0
    assert train(sample_manifest, tmp_path / "split", "adapter", *common, "--resume", "auto") == 0
    straight, split = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert sorted(split) == [1, 2, 3, 4]
    assert [split[s] for s in (3, 4)] == pytest.approx([straight[s] for s in (3, 4)], rel=1e-5, abs=1e-7)


def test_omniid_without_a_trained_encoder_is_refused(sample_manifest, tmp_path, caplog):
    assert train(sample_manifest, tmp_path / "run", "adapter", "--steps", "1") == 2
    assert "--init-from" in caplog.text and not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("representation", ["clip", "arcface", "arcface+clip"])
def test_a_baseline_trains_and_its_checkpoint_generates(sample_manifest, tmp_path, representation):
    out = tmp_path / "run"
    assert train(sample_manifest, out, "adapter", "--representation", representation, "--steps", "1") == 0
    gen = ControlNetGenerator.from_checkpoint(out)
    crops = sorted(landmarks_by_crop(sample_manifest))
    gen.bind_targets(sample_manifest, [Path(crops[0])])
    images = gen.generate(gen.tokens([[crops[1]]]), seeds=[0], steps=2)
    assert gen.representation_name == representation and images[0].size == (32, 32)


def test_training_and_eval_draw_the_same_landmark_images(sample_manifest):
    from omniid.landmarks import LandmarkTargets

    marks = landmarks_by_crop(sample_manifest)
    crop = sorted(marks)[0]
    reader = LandmarkTargets.for_manifest(sample_manifest, 32)
    target = reader.tensors([reader.image(Path(crop))])[0]
    assert target.shape == (6, 32, 32)
    assert torch.equal(target[3:], landmark_tensor(marks[crop], 32))   # what ControlNetGenerator draws
    moved = marks[crop].copy()
    moved[4] += 0.3 * (moved[2] - moved[0])                            # the nose tip turned to one side
    assert not torch.equal(landmark_tensor(moved, 32), target[3:])


def test_generations_follow_the_landmark_image(adapter_run, sample_manifest):
    gen = ControlNetGenerator.from_checkpoint(adapter_run)
    marks = landmarks_by_crop(sample_manifest)
    crops = sorted(marks)
    tokens = gen.tokens([[crops[0]]]).expand(2, -1, -1)
    turned = marks[crops[0]].copy()
    turned[4] += 0.3 * (turned[2] - turned[0])
    control = torch.stack([landmark_tensor(marks[crops[0]], 32), landmark_tensor(turned, 32)])
    obj = gen.objective
    images = sample_controlled(obj.parts, obj.controlnet, obj.prompt_embeds, obj.pooled_prompt_embeds, tokens,
                               obj.adapter, control, steps=2, guidance=3.5, generator=[torch.Generator().manual_seed(0)
                                                                         for _ in range(2)])
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    assert not torch.allclose(images[0], images[1], atol=1e-6)  # same identity and seed, another pose


def test_eval_marks_each_row_with_its_setting(sample_manifest, adapter_run, tmp_path):
    flow = tmp_path / "flow"
    assert train(sample_manifest, flow, "flow", "--steps", "1") == 0
    out = tmp_path / "eval"
    test = sample_manifest.with_name("test.parquet")
    assert eval_main(["--checkpoint", str(flow), "--controlnet", str(adapter_run), "--manifest", str(test),
                      "--out", str(out), "--inputs", "1", "--targets", "1", "--steps", "2", "--no-swap"]) == 0
    rows = pq.read_table(out / "results.parquet").to_pylist()
    settings = {r["representation"]: r["setting"] for r in rows}
    assert settings == {"omniid": DECODER_ONLY, "omniid (ControlNet)": CONTROLNET, "copy-input": "copy of an input"}
    table = (out / "table.md").read_text()
    assert f"| omniid (ControlNet) | {CONTROLNET} |" in table and f"| omniid | {DECODER_ONLY} |" in table
    assert json.loads((out / "settings.json").read_text())["generators"]["omniid (ControlNet)"]["setting"] == CONTROLNET


def test_eval_without_any_run_is_one_clear_error(sample_manifest, tmp_path, caplog):
    assert eval_main(["--manifest", str(sample_manifest), "--out", str(tmp_path / "eval")]) == 2
    assert "--controlnet" in caplog.text


def test_an_adapter_run_given_as_checkpoint_is_pointed_to_controlnet(sample_manifest, adapter_run, tmp_path, caplog):
    """It said 'state.json names no flow-stage preset (stage='adapter')', as if the run were damaged."""
    test = sample_manifest.with_name("test.parquet")
    assert eval_main(["--checkpoint", str(adapter_run), "--manifest", str(test), "--out", str(tmp_path / "eval"),
                      "--inputs", "1", "--targets", "1", "--steps", "2", "--no-swap"]) == 2
    assert ("a checkpoint of the adapter stage, not of the flow stage this reads (Table 1's ControlNet setting: "
            "omniid-eval takes it as --controlnet)") in caplog.text
