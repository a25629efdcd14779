"""Generation takes its settings from the run it uses (guidance per checkpoint, in omniid-eval per
row), a flow run's FluxPipeline takes text prompts, manifest paths work wherever omniid takes image
paths, and the documented offline diffusers example runs as written (docs/eval.md)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from omniid.cli import main as train_main
from omniid.crop_reader import CropReader
from omniid.eval_cli import eval_main, generate_main
from omniid.generation import OmniIDGenerator
from omniid_fixtures import group_photo, kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)

REPO = Path(__file__).resolve().parents[2]


def train_flow(manifest: Path, out: Path, *extra: str) -> Path:
    assert train_main(["--manifest", str(manifest), "--preset", "tiny", "--stage", "flow", "--out", str(out),
                       "--steps", "2", "--batch-size", "1", "--eval-every", "100", "--save-every", "2", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def runs(sample_manifest, tmp_path_factory) -> dict[str, Path]:
    """Two tiny flow runs: FLUX guidance 3.5 (the preset's) and 5.0 (`--guidance 5`)."""
    root = tmp_path_factory.mktemp("flow")
    return {"default": train_flow(sample_manifest, root / "default"),
            "five": train_flow(sample_manifest, root / "five", "--guidance", "5")}


def crops(sample_manifest: Path, n: int) -> list[Path]:
    from omniid.data import load_manifest

    return [crop for crop, _ in next(iter(load_manifest(sample_manifest).values()))[:n]]


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_generation_uses_the_runs_guidance(runs, sample_manifest):
    gen = OmniIDGenerator.from_checkpoint(runs["five"])
    tokens = gen.tokens([crops(sample_manifest, 2)], aligned=True)
    own, = gen.generate(tokens, seeds=[0], steps=2)
    five, = gen.generate(tokens, seeds=[0], steps=2, guidance=5.0)
    other, = gen.generate(tokens, seeds=[0], steps=2, guidance=3.5)
    assert gen.settings["trained_guidance"] == 5.0
    assert np.array_equal(pixels(own), pixels(five)) and not np.array_equal(pixels(own), pixels(other))



def test_inputs_are_read_at_the_encoders_side_not_at_the_generated_images(runs, sample_manifest):
    """The paper generates 448 px images from a 224 px encoder; the tiny preset's two sides are
    both 32, so a generated side of 64 is set here: the tokens are the encoder's on the crops as
    training read them (CropReader at model.image_size), whatever the side generated."""
    gen = OmniIDGenerator.from_checkpoint(runs["default"])
    gen.preset = dataclasses.replace(gen.preset, flow=dataclasses.replace(gen.preset.flow, image_size=64))
    inputs, reader = crops(sample_manifest, 2), CropReader(gen.preset.model.image_size)
    batch = {"inputs": reader.tensors([reader.read(crop, None)[0] for crop in inputs])[None],
             "input_valid": torch.ones(1, len(inputs), dtype=torch.bool)}
    with torch.no_grad():
        expected = gen.objective.representation(batch)
    torch.testing.assert_close(gen.tokens([inputs], aligned=True), expected)

def test_eval_applies_each_checkpoints_own_guidance(runs, sample_manifest, tmp_path):
    out = tmp_path / "eval"
    assert eval_main(["--checkpoint", str(runs["default"]), str(runs["five"]), "--manifest",
                      str(sample_manifest.parent), "--out", str(out), "--inputs", "1", "--targets", "1",
                      "--steps", "2", "--identities", "1", "--no-swap", "--no-copy-row"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert {label: (g["guidance_used"], g["trained_guidance"]) for label, g in settings["generators"].items()} == \
        {"omniid (default, step 2)": (3.5, 3.5), "omniid (five, step 2)": (5.0, 5.0)}  # two runs at one step
    # a folder of manifests evaluates its test split
    assert settings["manifest"] == str(sample_manifest.parent / "test.parquet")
    row = next(r for r in pq.read_table(out / "results.parquet").to_pylist() if r["representation"] == "omniid (five, step 2)")
    gen = OmniIDGenerator.from_checkpoint(runs["five"])
    again, = gen.generate(gen.tokens([[Path(p) for p in row["input_paths"]]], aligned=True), [row["seed"]], steps=2)
    assert np.array_equal(pixels(Image.open(out / row["image_path"]).convert("RGB")), pixels(again))


def test_a_scale_given_to_generate_holds_for_that_call_only(runs, sample_manifest):
    gen = OmniIDGenerator.from_checkpoint(runs["default"])
    adapter = gen.objective.adapter
    tokens = gen.tokens([crops(sample_manifest, 2)], aligned=True)
    before, = gen.generate(tokens, seeds=[0], steps=2)
    off, = gen.generate(tokens, seeds=[0], steps=2, scale=0.0)
    after, = gen.generate(tokens, seeds=[0], steps=2)
    assert adapter.scale == adapter.config["scale"] == 1.0  # what save_pretrained would write: the trained scale
    assert np.array_equal(pixels(before), pixels(after)) and not np.array_equal(pixels(before), pixels(off))


def test_settings_name_the_guidance_and_scale_used_beside_the_trained_ones(runs, sample_manifest, kept_faces,
                                                                          tmp_path):
    override = ["--guidance", "7", "--scale", "0.5", "--steps", "1"]
    assert eval_main(["--checkpoint", str(runs["default"]), "--manifest", str(sample_manifest.parent), "--out",
                      str(tmp_path / "eval"), "--inputs", "1", "--targets", "1", "--identities", "1", "--no-swap",
                      "--no-copy-row", "--no-real-row", *override]) == 0
    settings = json.loads((tmp_path / "eval" / "settings.json").read_text())
    used = {"guidance_used": 7.0, "scale_used": 0.5, "trained_guidance": 3.5, "trained_scale": 1.0}
    assert {key: settings["generators"]["omniid"][key] for key in used} == used
    listed = kept_faces["crop_path"].to_pylist()[:1]
    assert generate_main(["--checkpoint", str(runs["default"]), "--images", *listed, "--manifest",
                          str(sample_manifest.parent), "--out", str(tmp_path / "gen"), *override]) == 0
    settings = json.loads((tmp_path / "gen" / "settings.json").read_text())
    assert {key: settings[key] for key in used} == used


def test_generate_warns_of_a_group_photo_and_records_the_face_it_took(runs, tmp_path, caplog):
    photo = tmp_path / "group.png"
    large, _ = group_photo(photo)
    with caplog.at_level(logging.WARNING, logger="omniid"):
        assert generate_main(["--checkpoint", str(runs["default"]), "--images", str(photo), "--steps", "1",
                              "--out", str(tmp_path / "g")]) == 0
    record, = json.loads((tmp_path / "g" / "settings.json").read_text())["preprocessing"]
    assert record["faces_found"] == 2
    box = np.asarray(record["face_box"])  # the larger face's box, within the place it was pasted
    assert (np.abs(box - large) < 0.25 * (large[2] - large[0])).all()
    warning, = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "faces found" in r.getMessage()]
    assert warning.startswith(f"{photo}: 2 faces found; took the largest, box [x0, y0, x1, y1] = {record['face_box']}")


def test_a_runs_pipeline_takes_a_text_prompt_and_a_bare_one_says_how(runs):
    from omniid.errors import OmniIDError
    from omniid.flux import build_pipeline, load_flow_run

    run = load_flow_run(runs["five"])
    pipe = run.pipeline()
    call = dict(height=32, width=32, num_inference_steps=2, output_type="pt")
    by_text = pipe("photo of a person at the beach", generator=torch.Generator().manual_seed(0), **call).images
    embeds, pooled = run.embeddings("photo of a person at the beach")
    by_embeds = pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, guidance_scale=5.0,
                     generator=torch.Generator().manual_seed(0), **call).images
    assert torch.equal(by_text, by_embeds)  # the run's guidance is the default
    with pytest.raises(OmniIDError, match="no text encoders.*load_flow_run"):
        build_pipeline(run.parts)("photo of a person at the beach", **call)


def test_generate_takes_a_manifests_crop_paths(runs, sample_manifest, kept_faces, tmp_path, caplog):
    listed = kept_faces["crop_path"].to_pylist()[:2]  # relative to the extract run folder
    common = ["--checkpoint", str(runs["default"]), "--images", *listed, "--steps", "1"]
    assert generate_main([*common, "--manifest", str(sample_manifest.parent), "--out", str(tmp_path / "g")]) == 0
    settings = json.loads((tmp_path / "g" / "settings.json").read_text())
    assert [Path(p["image"]).is_file() for p in settings["preprocessing"]] == [True, True]
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert generate_main([*common, "--out", str(tmp_path / "h")]) == 2
    assert f"image not found: {listed[0]}; a manifest's crop_path is relative to its extract run folder" in caplog.text


def test_train_finds_the_test_split_of_a_manifest_folder(sample_manifest, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no test.parquet here: the folder's own must be found
    out = tmp_path / "mtd"
    assert train_main(["--manifest", str(sample_manifest.parent), "--preset", "tiny", "--stage", "mtd", "--out",
                       str(out), "--steps", "1", "--eval-every", "1"]) == 0
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(key.startswith("eval_") for entry in logged for key in entry)


def documented_example() -> str:
    """The Python block under "Try it offline" in docs/eval.md, as a user copies it."""
    text = (REPO / "docs" / "eval.md").read_text()
    section = text.split("### Try it offline", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_documented_offline_example_runs(runs, tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    os.symlink(runs["default"], tmp_path / "runs" / "omniid-demo-flow")  # where `make demo` leaves its flow run
    monkeypatch.chdir(tmp_path)
    exec(compile(documented_example(), "docs/eval.md", "exec"), {"__name__": "docs_example"})
    assert Image.open(tmp_path / "beach.png").size == (32, 32)
