"""A run records the frozen weights it loads from outside its checkpoints (a baseline's CLIP
weights file and identity model, the FLUX folder) by name and sha256; a resumed run and omniid-eval that would load
other weights are refused, the same weights (wherever they lie) are fine. The tiny architecture
stands in for ViT-H/14: a preset like tiny whose CLIP tower loads a weights file, as paper's does."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from omniid.checkpoint import pointed, read_state
from omniid.cli import main
from omniid.config import PRESETS
from omniid.eval_cli import eval_main
from omniid_flux_folder import flux_folder, flux_run
from omniid_fixtures import (kept_faces, one_torch_thread, sample_manifest,  # noqa: F401  (pytest fixtures)
                             write_eval_set)

PRESET = "tiny-clip-file"


@pytest.fixture
def clip_files(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """Two CLIP weights files of the tiny architecture (other seeds, other weights), and the
    preset that loads one, registered for this test."""
    import open_clip
    from safetensors.torch import save_file

    import omniid.clip_tower  # noqa: F401  (registers the tiny architecture with open_clip)

    tiny = PRESETS["tiny"]
    monkeypatch.setitem(PRESETS, PRESET, dataclasses.replace(
        tiny, name=PRESET, model=dataclasses.replace(tiny.model, clip_pretrained="a-file")))
    monkeypatch.delenv("OMNIID_CLIP_WEIGHTS", raising=False)
    files = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        path = tmp_path / f"clip-{seed}.safetensors"
        state = open_clip.create_model("OmniID-Tiny-ViT").state_dict()
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        files.append(path)
    return files[0], files[1]


def flow_args(manifest: Path, out: Path, weights: Path, *extra: str) -> list[str]:
    return ["--manifest", str(manifest), "--preset", PRESET, "--stage", "flow", "--representation", "clip",
            "--out", str(out), "--clip-weights", str(weights), "--steps", "2", "--save-every", "1",
            "--batch-size", "1", "--eval-every", "100", *extra]


def state(out: Path) -> dict:
    return read_state(pointed(out / "checkpoints"))


def test_resume_with_other_clip_weights_is_refused_and_the_same_file_anywhere_continues(
        sample_manifest, clip_files, tmp_path, caplog):
    first, second = clip_files
    out = tmp_path / "run"
    assert main(flow_args(sample_manifest, out, first, "--stop-after", "1")) == 0
    recorded = state(out)
    assert recorded["clip_weights"] == str(first.resolve())
    assert recorded["clip_weights_sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert main(flow_args(sample_manifest, out, second)) == 2
    assert (f"{out} holds a run made with other options: frozen CLIP weights (--clip-weights) {first.resolve()} "
            f"(sha256 {recorded['clip_weights_sha256'][:12]}...) (this command: {second.resolve()} (sha256 "
            in caplog.text)
    assert state(out)["step"] == 1
    moved = tmp_path / "elsewhere" / "weights.safetensors"  # the same weights on another disk
    moved.parent.mkdir()
    shutil.copy(first, moved)
    assert main(flow_args(sample_manifest, out, moved)) == 0
    assert state(out)["step"] == 2 and state(out)["clip_weights_sha256"] == recorded["clip_weights_sha256"]


def test_a_run_saved_before_its_frozen_weights_were_recorded_continues_only_when_resumed_explicitly(
        sample_manifest, clip_files, tmp_path, caplog):
    first, _ = clip_files
    out = tmp_path / "run"
    assert main(flow_args(sample_manifest, out, first, "--stop-after", "1")) == 0
    saved = pointed(out / "checkpoints") / "state.json"
    old = {k: v for k, v in state(out).items() if k not in ("clip_weights", "clip_weights_sha256", "flux",
                                                               "flux_sha256")}
    saved.write_text(json.dumps(old))
    assert main(flow_args(sample_manifest, out, first)) == 2
    assert (f"{out}: its newest intact checkpoint was saved before omniid-train recorded the frozen weights a "
            "run loads, "
            "so this command cannot check that it continues with the same frozen CLIP weights (--clip-weights): "
            "add --resume auto") in caplog.text
    assert main(flow_args(sample_manifest, out, first, "--resume", "auto")) == 0
    assert state(out)["step"] == 2 and state(out)["clip_weights"] == str(first.resolve())


def test_eval_refuses_other_clip_weights_and_takes_the_same(sample_manifest, clip_files, kept_faces, sample_run,
                                                          tmp_path, caplog):
    first, second = clip_files
    run = tmp_path / "run"
    assert main(flow_args(sample_manifest, run, first)) == 0
    (tmp_path / "evalset").mkdir()
    manifest = write_eval_set(tmp_path / "evalset", kept_faces, sample_run, identities=2, faces=3)

    def evaluate(weights: Path, out: str) -> int:
        return eval_main(["--checkpoint", str(run), "--manifest", str(manifest), "--out", str(tmp_path / out),
                          "--inputs", "1,2", "--targets", "1", "--steps", "2", "--clip-weights", str(weights)])

    assert evaluate(second, "other") == 2
    assert (f"{run / 'checkpoints' / 'step-00000002'} was trained with other frozen weights than this command "
            f"loads: frozen CLIP weights (--clip-weights) {first.resolve()}") in caplog.text
    assert "Give the run's own (--clip-weights FILE, --flux-path DIR; the identity model's weights" in caplog.text
    assert not (tmp_path / "other" / "results.parquet").exists()
    caplog.clear()
    assert evaluate(first, "same") == 0
    assert (tmp_path / "same" / "results.parquet").is_file() and "trained with other" not in caplog.text
    # settings.json says which weights the row loaded, beside those its checkpoint recorded
    frozen = json.loads((tmp_path / "same" / "settings.json").read_text())["generators"]["clip"]["frozen_weights"]
    assert frozen["loaded"] == {"clip_weights": str(first.resolve()),
                                "clip_weights_sha256": hashlib.sha256(first.read_bytes()).hexdigest(),
                                "flux": None, "flux_sha256": None,  # tiny: a random FLUX config, the preset's
                                "identity_model": None, "identity_model_sha256": None}
    assert frozen["trained_with"] == frozen["loaded"]
    # a checkpoint saved before the record: evaluated, with a warning that the weights are unverified
    saved = run / "checkpoints" / "step-00000002" / "state.json"
    saved.write_text(json.dumps({k: v for k, v in json.loads(saved.read_text()).items()
                                 if not k.startswith(("clip_weights", "flux"))}))
    with caplog.at_level(logging.WARNING):
        assert evaluate(second, "unverified") == 0
    assert ("saved before omniid-train recorded the frozen weights a run loads, so its frozen CLIP weights "
            "(--clip-weights) cannot be verified") in caplog.text


def test_the_flux_folder_is_known_by_its_files_wherever_it_lies_and_other_weights_are_refused(tmp_path, caplog):
    from omniid.command_facts import check_frozen_weights, frozen_facts
    from omniid.errors import CheckpointError

    tiny = PRESETS["tiny"].for_stage("flow")
    preset = dataclasses.replace(tiny, flow=dataclasses.replace(tiny.flow, transformer=None, vae=None))
    trained = flux_folder(tmp_path / "flux", seed=1)
    copied = shutil.copytree(trained, tmp_path / "elsewhere" / "flux")
    other = flux_folder(tmp_path / "other", seed=2)  # the same configs and file sizes, other weights
    facts = {str(path): frozen_facts(preset, "omniid", True, flux_path=path) for path in (trained, copied, other)}
    recorded = facts[str(trained)]
    assert recorded["flux"] == str(trained.resolve()) and recorded["clip_weights_sha256"] is None
    assert facts[str(copied)]["flux_sha256"] == recorded["flux_sha256"]
    check_frozen_weights(tmp_path / "step", recorded, facts[str(copied)])  # the same FLUX: evaluated
    with pytest.raises(CheckpointError, match=f"FLUX folder \\(--flux-path\\) {trained.resolve()} "):
        check_frozen_weights(tmp_path / "step", recorded, facts[str(other)])
    # a random config is the preset's: nothing to record or check
    assert frozen_facts(tiny, "omniid", True) == {"clip_weights": None, "clip_weights_sha256": None,
                                                  "flux": None, "flux_sha256": None,
                                                  "identity_model": None, "identity_model_sha256": None}


def test_load_flow_run_takes_only_the_flux_the_run_trained_with(sample_manifest, tmp_path, caplog, monkeypatch):
    """The diffusers adapter's loader (`omniid.flux.load_flow_run`) checks FLUX as omniid-eval does:
    the same files anywhere load, other weights are refused before anything loads, and a
    checkpoint saved before the record loads with a warning."""
    from omniid.errors import CheckpointError
    from omniid.flux import load_flow_run

    out, trained, recorded = flux_run(sample_manifest, tmp_path, monkeypatch)
    other = flux_folder(tmp_path / "other", seed=2)
    copied = shutil.copytree(trained, tmp_path / "elsewhere" / "flux")
    run = load_flow_run(out, flux_path=copied)
    assert run.flux_path == copied and run.adapter is not None
    with pytest.raises(CheckpointError, match=f"trained with other frozen weights than this command loads: FLUX "
                                              f"folder \\(--flux-path\\) {trained.resolve()} "):
        load_flow_run(out, flux_path=other)
    saved = pointed(out / "checkpoints") / "state.json"
    saved.write_text(json.dumps({k: v for k, v in recorded.items() if not k.startswith("flux")}))
    with caplog.at_level(logging.WARNING):
        assert load_flow_run(out, flux_path=other).flux_path == other
    assert "saved before omniid-train recorded the frozen weights a run loads, so its FLUX folder" in caplog.text


def test_eval_settings_name_the_flux_folder_it_loaded_beside_the_recorded_one(sample_manifest, kept_faces, sample_run,
                                                                           tmp_path, monkeypatch):
    out, trained, recorded = flux_run(sample_manifest, tmp_path, monkeypatch)
    copied = shutil.copytree(trained, tmp_path / "elsewhere" / "flux")  # the same FLUX on another disk
    (tmp_path / "evalset").mkdir()
    manifest = write_eval_set(tmp_path / "evalset", kept_faces, sample_run, identities=2, faces=3)
    assert eval_main(["--checkpoint", str(out), "--manifest", str(manifest), "--out", str(tmp_path / "eval"),
                      "--inputs", "1", "--targets", "1", "--steps", "2", "--flux-path", str(copied)]) == 0
    frozen = json.loads((tmp_path / "eval" / "settings.json").read_text())["generators"]["omniid"]["frozen_weights"]
    assert frozen["loaded"]["flux"] == str(copied.resolve())
    assert frozen["trained_with"]["flux"] == str(trained.resolve())
    assert frozen["loaded"]["flux_sha256"] == frozen["trained_with"]["flux_sha256"] == recorded["flux_sha256"]


def arcface_args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["--manifest", str(manifest), "--preset", "tiny", "--stage", "flow", "--representation", "arcface",
            "--out", str(out), "--steps", "2", "--save-every", "1", "--batch-size", "1", "--eval-every", "100", *extra]


def other_identity_model(out: Path) -> tuple[Path, dict]:
    """(the newest checkpoint, its state) after its record is made to name another identity model's
    weights, as a run trained with another one would have it."""
    folder = pointed(out / "checkpoints")
    recorded = read_state(folder)
    (folder / "state.json").write_text(json.dumps({**recorded, "identity_model_sha256": "0" * 64}))
    return folder, recorded


def test_an_arcface_baseline_records_its_identity_model_and_a_resume_with_another_is_refused(
        sample_manifest, tmp_path, caplog):
    out = tmp_path / "run"
    assert main(arcface_args(sample_manifest, out, "--stop-after", "1")) == 0
    recorded = state(out)
    name, files = recorded["identity_model"].split(" (", 1)
    weights = Path(files.rstrip(")"))  # the tiny preset's pipeline, sample: SFace, one file
    assert name == "sface" and weights.is_file()
    assert recorded["identity_model_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    folder, _ = other_identity_model(out)
    assert main(arcface_args(sample_manifest, out)) == 2
    assert (f"{out} holds a run made with other options: frozen identity model (the mfhq pipeline's) sface "
            f"({weights}) (sha256 000000000000...) (this command: sface ({weights}) (sha256 "
            f"{recorded['identity_model_sha256'][:12]}...)") in caplog.text
    assert state(out)["step"] == 1
    (folder / "state.json").write_text(json.dumps(recorded))  # its own identity model: it continues
    assert main(arcface_args(sample_manifest, out)) == 0
    assert state(out)["step"] == 2 and state(out)["identity_model_sha256"] == recorded["identity_model_sha256"]


def test_generation_from_an_arcface_baseline_takes_only_its_own_identity_model(sample_manifest, tmp_path, caplog):
    """omniid-eval's and omniid-generate's loader (`OmniIDGenerator.from_checkpoint`) refuses a
    checkpoint recorded with another identity model before anything loads, takes its own, and
    takes one saved before the record with a warning."""
    from omniid.errors import CheckpointError
    from omniid.generation import OmniIDGenerator

    out = tmp_path / "run"
    assert main(arcface_args(sample_manifest, out, "--steps", "1")) == 0
    folder, recorded = other_identity_model(out)
    with pytest.raises(CheckpointError, match=f"{folder} was trained with other frozen weights than this command "
                                              "loads: frozen identity model \\(the mfhq pipeline's\\) sface "):
        OmniIDGenerator.from_checkpoint(out)
    (folder / "state.json").write_text(json.dumps(recorded))
    generator = OmniIDGenerator.from_checkpoint(out)
    frozen = generator.settings["frozen_weights"]  # settings.json's: what loaded beside what was recorded
    assert frozen["loaded"]["identity_model_sha256"] == recorded["identity_model_sha256"]
    assert frozen["trained_with"] == frozen["loaded"]
    (folder / "state.json").write_text(json.dumps({k: v for k, v in recorded.items()
                                                   if not k.startswith("identity_model")}))
    with caplog.at_level(logging.WARNING):
        OmniIDGenerator.from_checkpoint(out)
    assert ("saved before omniid-train recorded the frozen weights a run loads, so its frozen identity model "
            "(the mfhq pipeline's) cannot be verified") in caplog.text
