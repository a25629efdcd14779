"""omniid-eval and omniid-generate end to end on the tiny preset (random weights: the numbers mean
nothing about quality), with a flow checkpoint trained by omniid-train and real face crops from
the sample extract run."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from omniid.eval_cli import eval_main, generate_main
from omniid_fixtures import (kept_faces, one_torch_thread, read_only_dir, sample_manifest,  # noqa: F401  (pytest fixtures)
                             train_flow, write_contract_folder)

INPUTS = (1, 2)



@pytest.fixture(scope="module")
def flow_run(sample_manifest, tmp_path_factory):
    return train_flow(sample_manifest, tmp_path_factory.mktemp("flow") / "run", "omniid")


@pytest.fixture(scope="module")
def arcface_run(sample_manifest, tmp_path_factory):
    return train_flow(sample_manifest, tmp_path_factory.mktemp("flow") / "arcface", "arcface")


@pytest.fixture(scope="module")
def eval_manifest(kept_faces, sample_run, tmp_path_factory):
    """Two identities of 4 faces each, copied as 000.jpg... so the protocol's order is known; the
    second identity's target (the face after the first max(k)) is a blank image: no face."""
    folder = tmp_path_factory.mktemp("evalset")
    clips = sorted(set(kept_faces["clip_id"].to_pylist()))[:2]
    rows = []
    for n, clip in enumerate(clips):
        faces = [r for r in kept_faces.to_pylist() if r["clip_id"] == clip][:4]
        for i, face in enumerate(faces):
            crop, mask = f"id{n}/{i:03d}.jpg", f"id{n}/{i:03d}.png"
            (folder / crop).parent.mkdir(exist_ok=True)
            shutil.copy(sample_run / face["crop_path"], folder / crop)
            shutil.copy(sample_run / face["mask_path"], folder / mask)
            if n == 1 and i == max(INPUTS):
                Image.new("RGB", Image.open(folder / crop).size, (128, 128, 128)).save(folder / crop)
            rows.append({**face, "clip_id": f"id{n}", "crop_path": crop, "mask_path": mask})
    # the copied crops' folder stands in for the run that made them (paths are relative to it)
    table = pa.Table.from_pylist(rows, schema=kept_faces.schema)
    write_contract_folder(folder, {"train": table, "test": table}, folder)
    return folder / "test.parquet"


def run_eval(runs, eval_manifest, out, *extra) -> int:
    runs = [runs] if not isinstance(runs, (list, tuple)) else runs
    return eval_main(["--checkpoint", *map(str, runs), "--manifest", str(eval_manifest), "--out", str(out),
                      "--inputs", ",".join(map(str, INPUTS)), "--targets", "1", "--steps", "2", *extra])


@pytest.fixture(scope="module")
def evaluated(flow_run, arcface_run, eval_manifest, tmp_path_factory):
    outs = [tmp_path_factory.mktemp(f"eval{i}") for i in range(2)]
    for out in outs:
        assert run_eval([flow_run, arcface_run], eval_manifest, out) == 0
    return outs


def test_eval_writes_results_table_and_sheets(evaluated):
    out = evaluated[0]
    results = pq.read_table(out / "results.parquet").to_pylist()
    # 2 identities x (omniid, arcface, copy-input) x 2 values of k x 1 target x 1 sample
    assert len(results) == 2 * 3 * len(INPUTS)
    assert {r["representation"] for r in results} == {"omniid", "arcface", "copy-input"}
    for r in results:
        assert len(r["input_paths"]) == r["k"]
        assert r["target_path"].endswith(f"{max(INPUTS):03d}.jpg")  # never an input
        assert r["target_path"] not in r["input_paths"]
    generated = [r for r in results if r["representation"] == "omniid"]
    assert all((out / r["image_path"]).is_file() for r in generated)
    assert Image.open(out / generated[0]["image_path"]).size == (32, 32)
    # a generation without a face scores 0 and is counted; a ground truth without one is not scored
    assert all(r["id_similarity"] == 0.0 or not r["gt_face"] for r in generated if not r["face"])
    blank = [r for r in results if r["identity_id"] == "id1"]
    assert not any(r["gt_face"] for r in blank) and all(np.isnan(r["id_similarity"]) for r in blank)
    copies = [r for r in results if r["representation"] == "copy-input" and r["identity_id"] == "id0"]
    assert all(r["face"] and r["sim_ref"] == pytest.approx(1.0, abs=1e-5) for r in copies)
    assert all(0.3 < r["id_similarity"] < 1.0 for r in copies)  # the same person, another frame
    assert sorted(p.name for p in (out / "sheets").iterdir()) == ["id0.png", "id1.png"]
    settings = json.loads((out / "settings.json").read_text())
    assert settings["metrics"]["pose_model"] == "pnp68" and settings["protocol"]["steps"] == 2
    table_md = (out / "table.md").read_text()
    assert "pnp68" in table_md and "| omniid | decoder-only | 2 | 1 |" in table_md  # setting, step, k
    assert "| arcface ‡ | decoder-only | 2 | 2 |" in table_md
    rows = [line.split("|")[1].strip() for line in table_md.splitlines()
            if line.startswith("| ") and not line.startswith("| Representation")][:6]
    assert rows == ["omniid", "omniid", "arcface ‡", "arcface ‡", "copy-input", "copy-input"]


def test_table_equals_a_recomputation_from_results(evaluated):
    import pandas as pd

    out = evaluated[0]
    df = pd.read_parquet(out / "results.parquet")
    table = pd.read_csv(out / "table.csv").set_index(["representation", "k"])
    for (rep, k), group in df.groupby(["representation", "k"]):
        scored = group[group.gt_face]
        expected = {
            "id_similarity:sface": scored.id_similarity.mean(),
            "sim_ref:sface": scored.sim_ref.mean(),
            "id_similarity:dlib-resnet": scored["id_similarity:dlib-resnet"].mean(),
            "pose_error": scored[scored.face].pose_error.mean(),
            "no_face_rate": 1 - group.face.mean(),
            "n": len(group),
        }
        for metric, value in expected.items():
            got = table.loc[(rep, k), metric]
            assert (np.isnan(got) and np.isnan(value)) or got == pytest.approx(value, abs=1e-12), (rep, k, metric)
    assert table.loc[("copy-input", 1), "id_similarity:sface"] > 0.3  # a non-trivial number was checked


def test_two_runs_give_identical_results(evaluated):
    a, b = evaluated
    import pandas as pd

    results = pd.read_parquet(a / "results.parquet")
    assert results.equals(pd.read_parquet(b / "results.parquet"))  # NaN where NaN, every value equal
    assert results.id_similarity.notna().any()
    assert (a / "table.csv").read_bytes() == (b / "table.csv").read_bytes()
    for sheet in (a / "sheets").iterdir():
        assert sheet.read_bytes() == (b / "sheets" / sheet.name).read_bytes()


def test_eval_reports_the_identity_swap_margin_per_representation(evaluated):
    import pandas as pd

    a, b = evaluated
    swap = pd.read_parquet(a / "swap.parquet")
    results = pd.read_parquet(a / "results.parquet")
    k = max(INPUTS)
    # 2 identities x (omniid, arcface, copy-input) x 1 target x 1 sample, each generated from the other's inputs
    assert len(swap) == 2 * 3 and set(swap.representation) == {"omniid", "arcface", "copy-input"}
    assert (swap.donor_id != swap.identity_id).all() and (swap.k == k).all()
    settings = json.loads((a / "settings.json").read_text())["swap"]
    assert settings["donors"] == {"id0": "id1", "id1": "id0"} and settings["k"] == k
    assert settings["bootstrap"] == {"resamples": 1000, "seed": 0, "level": 0.95}
    generated = swap[swap.representation != "copy-input"]
    assert all((a / path).is_file() for path in generated.image_path)
    own = results[results.k == k].set_index(["identity_id", "representation", "target", "sample"]).id_similarity
    for row in swap.itertuples():  # the own side is the same generation results.parquet scored
        expected = own[(row.identity_id, row.representation, row.target, row.sample)]
        assert (np.isnan(expected) and np.isnan(row.id_similarity_own)) or row.id_similarity_own == expected
    table = pd.read_csv(a / "swap.csv").set_index("representation")
    assert list(table.index) == ["omniid", "arcface", "copy-input"]
    measured = swap[swap.gt_face & swap.face & swap.own_face]  # a pair with a failed generation has no margin
    assert swap.margin.notna().sum() == len(measured) and measured.margin.notna().all()
    for rep, group in measured.groupby("representation"):
        per_identity = group.groupby("identity_id").margin.mean()
        assert table.loc[rep, "margin"] == pytest.approx(per_identity.mean())
        assert table.loc[rep, "low"] <= table.loc[rep, "margin"] <= table.loc[rep, "high"]
        assert table.loc[rep, "identities"] == len(per_identity)
    assert "Identity swap (k=2)" in (a / "table.md").read_text()
    assert (a / "swap.csv").read_bytes() == (b / "swap.csv").read_bytes()


def test_a_swap_row_of_failed_generations_reads_not_measured_with_its_no_face_rate(evaluated):
    """The tiny preset's random FLUX draws no face: every own and swapped generation failed, so
    there is no margin to give. Before, the row read +0.000 [+0.000, +0.000] (two failures scored
    0 each), as if the representation were measured not to steer identity."""
    import pandas as pd

    out = evaluated[0]
    swap = pd.read_parquet(out / "swap.parquet")
    generated = swap[swap.representation != "copy-input"]
    assert not generated.face.any()  # the premise: all failures
    assert generated.margin.isna().all()
    assert not generated.own_face.any()
    table = pd.read_csv(out / "swap.csv").set_index("representation")
    for rep in ("omniid", "arcface"):
        assert np.isnan(table.loc[rep, "margin"]) and np.isnan(table.loc[rep, "low"])
        assert table.loc[rep, "no_face_rate"] == 1.0 and table.loc[rep, "pairs"] == 0
    assert table.loc["copy-input", "no_face_rate"] == 0.0 and np.isfinite(table.loc["copy-input", "margin"])
    text = (out / "table.md").read_text().split("Identity swap", 1)[1]
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "| No face |" in rows["| Representation"]
    assert rows["| omniid"].endswith("| n/a | n/a | n/a | n/a | 0 | 1.000 |")
    assert "+0.000" not in rows["| omniid"] and rows["| copy-input"].endswith(" | 0.000 |")
    assert "n/a: not measured: no pair of own and swapped generations with a face (omniid, arcface)" in text
    # settings.json stays strict JSON (jq and other languages refuse a bare NaN): not measured is null
    settings = json.loads((out / "settings.json").read_text(), parse_constant=_refuse)
    assert "NaN" not in (out / "settings.json").read_text() and settings


def _refuse(name: str):
    raise AssertionError(f"settings.json holds {name}, which is not JSON")


def test_generate_writes_images_and_settings(flow_run, kept_faces, sample_run, tmp_path):
    images = [str(sample_run / p) for p in kept_faces["crop_path"].to_pylist()[:3]]
    out = tmp_path / "gen"
    assert generate_main(["--checkpoint", str(flow_run / "checkpoints" / "latest"), "--images", *images,
                          "--prompt", "photo of a person.", "--out", str(out), "--seed", "7", "--steps", "2",
                          "--num-images", "2"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["seeds"] == [7, 8] and settings["steps"] == 2 and settings["images"] == images
    assert settings["representation"] == "omniid" and settings["prompt"] == "photo of a person."
    # the sample run's crops are aligned crops already: used as they are, as training read them
    assert [p["how"] for p in settings["preprocessing"]] == ["an aligned crop already, used as it is"] * 3
    first, second = (np.asarray(Image.open(out / name)) for name in settings["outputs"])
    assert first.shape == (32, 32, 3) and not np.array_equal(first, second)  # one seed each


def test_bad_input_is_one_clear_error(flow_run, eval_manifest, kept_faces, sample_run, tmp_path, caplog,
                                     monkeypatch):
    images = [str(sample_run / p) for p in kept_faces["crop_path"].to_pylist()[:1]]
    no_adapter = tmp_path / "no-adapter"
    shutil.copytree(flow_run / "checkpoints" / (flow_run / "checkpoints" / "latest").read_text().strip(), no_adapter)
    (no_adapter / "adapter.safetensors").unlink()
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert generate_main(["--checkpoint", str(no_adapter), "--images", *images, "--out", str(tmp_path / "o")]) == 2
        assert "no-adapter" in caplog.text and "adapter.safetensors" in caplog.text
        caplog.clear()
        missing = str(tmp_path / "nobody.jpg")
        assert generate_main(["--checkpoint", str(flow_run), "--images", missing, "--out", str(tmp_path / "o")]) == 2
        assert "nobody.jpg" in caplog.text
        caplog.clear()
        assert run_eval(no_adapter, eval_manifest, tmp_path / "e") == 2
        assert "no-adapter" in caplog.text
        caplog.clear()
        assert run_eval(flow_run, tmp_path / "absent.parquet", tmp_path / "e") == 2
        assert "absent.parquet" in caplog.text
        caplog.clear()
        assert run_eval(flow_run, eval_manifest, tmp_path / "e", "--inputs", "9") == 2  # argparse: the last wins
        assert "no identity has the 10 faces" in caplog.text
        caplog.clear()
        # 4 faces serve k = 1, 2 (and 3), not 4: a swap at 4 would have no own generation to compare with
        assert run_eval(flow_run, eval_manifest, tmp_path / "e", "--inputs", "1,2,4", "--swap-k", "4") == 2
        assert "--swap-k 4: k = 4 is not evaluated (the data serves --inputs 1,2" in caplog.text
        assert not (tmp_path / "e").exists()  # refused before anything was written
        caplog.clear()
        # a paper-preset checkpoint without FLUX.1-dev on this machine says what is missing
        monkeypatch.delenv("OMNIID_FLUX_PATH", raising=False)
        from omniid.config import get_preset

        paper_run = shutil.copytree(flow_run, tmp_path / "paper-run")  # a step folder is read beside its run's preset.json
        paper = paper_run / "checkpoints" / (flow_run / "checkpoints" / "latest").read_text().strip()
        state = json.loads((paper / "state.json").read_text())
        paper_preset = get_preset("paper", stage="flow").to_dict()
        (paper / "state.json").write_text(json.dumps({**state, "preset": "paper", "flow": paper_preset["flow"]}))
        (paper_run / "preset.json").write_text(json.dumps(paper_preset))
        assert generate_main(["--checkpoint", str(paper), "--images", *images, "--out", str(tmp_path / "o")]) == 2
        assert "FLUX.1-dev" in caplog.text and "--flux-path" in caplog.text
        caplog.clear()
        # a device torch cannot use here: one line before the checkpoint is read (torch's traceback
        # after it, before); cuda:99 is on no machine the suite runs on, GPU or not
        assert generate_main(["--checkpoint", str(flow_run), "--images", *images, "--device", "cuda:99",
                              "--out", str(tmp_path / "o")]) == 2
        assert "--device 'cuda:99': " in caplog.text and ("sees no CUDA GPU" in caplog.text
                                                          or "CUDA device(s), numbered" in caplog.text)
        caplog.clear()
        assert run_eval(flow_run, eval_manifest, tmp_path / "e", "--device", "gpu") == 2
        assert "--device 'gpu': not a device; use cpu, cuda or cuda:N" in caplog.text
        assert not (tmp_path / "o").exists() and not (tmp_path / "e").exists()


@pytest.mark.parametrize("kind", ["FluxPipeline", "FluxControlNetPipeline"])
def test_the_adapter_attaches_to_a_flux_pipeline_and_detach_restores_it(flow_run, kind):
    """The public path: OmniIDAdapter.from_pretrained(run).attach(pipe) + ip_adapter_kwargs(tokens)."""
    import torch
    from diffusers import FluxControlNetModel, FluxControlNetPipeline, FluxPipeline

    from omniid.adapter import OmniIDAdapter
    from omniid.config import get_preset
    from omniid.encoder import OmniIDEncoder
    from omniid.flux import load_flux
    from omniid.generation import ip_adapter_kwargs

    flow = get_preset("tiny", stage="flow").flow
    torch.manual_seed(0)
    parts = load_flux(flow)
    common = dict(scheduler=parts.scheduler, vae=parts.vae, text_encoder=None, tokenizer=None, text_encoder_2=None,
                  tokenizer_2=None, transformer=parts.transformer)
    extra = {}
    if kind == "FluxPipeline":
        pipe = FluxPipeline(**common)
    else:
        controlnet = FluxControlNetModel(**{k: v for k, v in flow.transformer.items() if k != "num_single_layers"},
                                         num_single_layers=0)
        pipe = FluxControlNetPipeline(**common, controlnet=controlnet)
        extra = {"control_image": torch.rand(1, 3, 32, 32), "controlnet_conditioning_scale": 0.5}
    g = torch.Generator().manual_seed(0)
    prompt = dict(prompt_embeds=torch.randn(1, 8, 32, generator=g), pooled_prompt_embeds=torch.randn(1, 32, generator=g))

    def run(**kwargs):
        out = pipe(**prompt, **extra, height=32, width=32, num_inference_steps=2,
                   generator=torch.Generator().manual_seed(3), output_type="pt", **kwargs)
        return out.images

    processors = dict(pipe.transformer.attn_processors)
    base = run()
    tokens = OmniIDEncoder.from_pretrained(flow_run).encode([torch.rand(3, 32, 32, generator=g)], aligned=True)[None]
    adapter = OmniIDAdapter.from_pretrained(flow_run).attach(pipe)
    conditioned = run(**ip_adapter_kwargs(tokens))
    assert (conditioned - base).abs().max() > 1e-4  # two training steps moved to_v_ip off zero
    adapter.detach()
    assert all(pipe.transformer.attn_processors[name] is proc for name, proc in processors.items())
    assert torch.equal(run(), base)


def test_a_unet_pipeline_is_refused_with_the_reason(flow_run):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from omniid.adapter import OmniIDAdapter

    unet = UNet2DConditionModel(sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=[8], norm_num_groups=4, latent_channels=4)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=DDIMScheduler(clip_sample=False),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    processors = dict(pipe.unet.attn_processors)
    with pytest.raises(TypeError, match="StableDiffusionPipeline.*double-stream blocks"):
        OmniIDAdapter.from_pretrained(flow_run).attach(pipe)
    assert all(pipe.unet.attn_processors[name] is proc for name, proc in processors.items())  # untouched


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Fails the test if a checkpoint gets loaded."""
    from omniid.generation import OmniIDGenerator

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before --out was checked")

    monkeypatch.setattr(OmniIDGenerator, "from_checkpoint", refuse)


def test_eval_and_generate_check_out_and_counts_before_loading_anything(flow_run, eval_manifest, kept_faces,
                                                                        sample_run, read_only_dir, tmp_path,
                                                                        caplog, nothing_loaded):
    images = [str(sample_run / p) for p in kept_faces["crop_path"].to_pylist()[:1]]
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    unwritable = read_only_dir / "out"
    for out, message in ((a_file, f"--out {a_file}: is a file, not a folder"),
                         (unwritable, f"--out {unwritable}: {read_only_dir}, where it would be made, is on a "
                                      "read-only file system")):
        caplog.clear()
        assert run_eval(flow_run, eval_manifest, out) == 2
        assert message in caplog.text
        caplog.clear()
        assert generate_main(["--checkpoint", str(flow_run), "--images", *images, "--out", str(out)]) == 2
        assert message in caplog.text
    caplog.clear()
    assert run_eval(flow_run, eval_manifest, tmp_path / "e", "--steps", "0") == 2
    assert "--steps takes an integer >= 1, got 0" in caplog.text
    caplog.clear()
    assert generate_main(["--checkpoint", str(flow_run), "--images", *images, "--out", str(tmp_path / "g"),
                          "--num-images", "0"]) == 2
    assert "--num-images takes an integer >= 1, got 0" in caplog.text
    assert not (tmp_path / "e").exists() and not (tmp_path / "g").exists()


def test_generate_refuses_an_input_image_without_a_face_naming_it(flow_run, kept_faces, sample_run, tmp_path,
                                                                  caplog):
    images = [str(sample_run / p) for p in kept_faces["crop_path"].to_pylist()[:2]]
    blank = tmp_path / "blank.png"
    Image.new("RGB", Image.open(images[0]).size, (128, 128, 128)).save(blank)
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert generate_main(["--checkpoint", str(flow_run), "--images", *images, str(blank), "--out",
                              str(tmp_path / "gen"), "--steps", "1"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"{blank}: no face found by the sample preset's detector; give a photo with a visible face "
                      "(or its aligned crop)"]
    assert not (tmp_path / "gen" / "seed0.png").exists()


def _files(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_eval_refuses_an_earlier_output_and_force_replaces_it_whole(flow_run, evaluated, eval_manifest, tmp_path,
                                                                     caplog):
    out = tmp_path / "eval"
    shutil.copytree(evaluated[0], out)  # omniid + arcface rows, with the swap
    before = _files(out)
    assert json.loads((out / "omniid-eval.json").read_text())["state"] == "complete"
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert run_eval(flow_run, eval_manifest, out, "--no-swap") == 2
    assert f"--out {out}: holds an earlier omniid-eval output; give --force to replace it" in caplog.text
    assert _files(out) == before  # the first results intact
    assert run_eval(flow_run, eval_manifest, out, "--no-swap", "--force") == 0
    assert not list(out.glob("swap.*"))  # no earlier swap numbers beside "swap skipped"
    assert json.loads((out / "settings.json").read_text())["swap"] == {"skipped": "turned off (--no-swap)"}
    assert sorted(p.name for p in (out / "images").iterdir()) == ["omniid"]  # arcface's images went with its rows
    assert not list(out.rglob("swap_k*.png"))
    assert json.loads((out / "omniid-eval.json").read_text())["state"] == "complete"


def test_eval_never_takes_or_deletes_a_folder_it_did_not_write(flow_run, eval_manifest, tmp_path, caplog):
    out = tmp_path / "mine"
    (out / "images").mkdir(parents=True)
    (out / "images" / "holiday.jpg").write_bytes(b"not ours")
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert run_eval(flow_run, eval_manifest, out, "--force") == 2
    assert f"--out {out}: already holds files that are not an omniid-eval output (images)" in caplog.text
    assert (out / "images" / "holiday.jpg").read_bytes() == b"not ours"


def test_an_interrupted_eval_is_never_read_as_complete(eval_manifest, tmp_path, monkeypatch, caplog):
    import omniid.evaluate as evaluate_module
    from omniid.eval_out import EVAL, state_of
    from omniid.metrics import FaceMetrics

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "write_report", killed)  # after results, table and settings
    out = tmp_path / "eval"
    with pytest.raises(KeyboardInterrupt):  # the reference rows alone: no model to load
        evaluate_module.evaluate({}, eval_manifest, out, FaceMetrics("sample"),
                                 evaluate_module.Protocol(inputs=INPUTS, targets=1, bootstrap=20))
    assert (out / "results.parquet").is_file() and (out / "settings.json").is_file()
    assert state_of(out, EVAL) == "running"
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert eval_main(["--bench", str(tmp_path / "absent"), "--out", str(out)]) == 2
    assert "holds an earlier omniid-eval interrupted output (never completed); give --force" in caplog.text


def test_generate_refuses_an_earlier_output_and_force_replaces_it_whole(flow_run, kept_faces, sample_run, tmp_path,
                                                                         caplog):
    images = [str(sample_run / p) for p in kept_faces["crop_path"].to_pylist()[:2]]
    out = tmp_path / "gen"

    def generate(*extra) -> int:
        return generate_main(["--checkpoint", str(flow_run), "--images", *images, "--out", str(out), "--steps", "1",
                              *extra])

    assert generate("--seed", "7", "--num-images", "2") == 0
    before = _files(out)
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert generate("--seed", "0") == 2
    assert f"--out {out}: holds an earlier omniid-generate output; give --force to replace it" in caplog.text
    assert _files(out) == before
    assert generate("--seed", "0", "--force") == 0
    assert sorted(p.name for p in out.iterdir()) == ["omniid-generate.json", "seed0.png", "settings.json"]
    assert json.loads((out / "settings.json").read_text())["outputs"] == ["seed0.png"]
    assert json.loads((out / "omniid-generate.json").read_text())["state"] == "complete"
