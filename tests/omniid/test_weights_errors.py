"""Missing or damaged weights end a command with one error naming each file, what is wrong and
where to get it (exit 2, no traceback), every missing kind at once; mfhq's weights folder
(--models-dir) reaches the identity model of the arcface baselines as it reaches mfhq's own."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from omniid.cli import main
from omniid.config import PRESETS
from omniid.eval_cli import eval_main
from omniid_fixtures import (kept_faces, one_torch_thread, sample_manifest,  # noqa: F401  (pytest fixtures)
                             write_eval_set)
from omniid_flux_folder import flux_folder, flux_run

SFACE = "face_recognition_sface_2021dec_int8bq.onnx"  # the sample pipeline's identity model (tiny's)


def sface_file() -> Path:
    from mfhq.faces import identity_weights

    (path, _), = identity_weights("sample")[1]
    return path


def damaged_models_dir(folder: Path) -> Path:
    """An mfhq weights folder whose SFace file is not SFace (a truncated download)."""
    folder.mkdir()
    (folder / SFACE).write_bytes(b"not an onnx file")
    return folder


@pytest.fixture
def frozen_files_preset(monkeypatch) -> str:
    """tiny, but its CLIP tower loads a weights file and its FLUX is a folder, as paper's do."""
    tiny, name = PRESETS["tiny"], "tiny-frozen-files"
    monkeypatch.setitem(PRESETS, name, dataclasses.replace(
        tiny, name=name, model=dataclasses.replace(tiny.model, clip_pretrained="a-file"),
        flow=dataclasses.replace(tiny.flow, transformer=None, vae=None)))
    monkeypatch.delenv("OMNIID_CLIP_WEIGHTS", raising=False)
    monkeypatch.delenv("OMNIID_FLUX_PATH", raising=False)
    monkeypatch.delenv("MFHQ_MODELS_DIR", raising=False)
    return name


def test_the_identity_model_and_its_record_come_from_models_dir(sample_manifest, tmp_path, monkeypatch):
    from mfhq.faces import MfhqError
    from omniid.checkpoint import pointed, read_state
    from omniid.generation import OmniIDGenerator

    monkeypatch.delenv("MFHQ_MODELS_DIR", raising=False)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(sface_file(), models / SFACE)
    out = tmp_path / "run"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--stage", "flow", "--representation",
                 "arcface", "--out", str(out), "--steps", "1", "--batch-size", "1", "--eval-every", "100",
                 "--models-dir", str(models)]) == 0
    assert read_state(pointed(out / "checkpoints"))["identity_model"] == f"sface ({(models / SFACE).resolve()})"
    generator = OmniIDGenerator.from_checkpoint(out, models_dir=models)  # omniid-eval's and omniid-generate's
    assert generator.frozen["identity_model"] == f"sface ({(models / SFACE).resolve()})"
    damaged = damaged_models_dir(tmp_path / "damaged")
    with pytest.raises(MfhqError, match=f"{damaged / SFACE}: sha256 "):  # its damaged file is the one named
        OmniIDGenerator.from_checkpoint(out, models_dir=damaged)


def test_train_names_every_missing_or_damaged_weight_at_once(sample_manifest, frozen_files_preset, tmp_path,
                                                             caplog):
    clip, flux = tmp_path / "nowhere" / "clip.safetensors", tmp_path / "nowhere" / "flux"
    models = damaged_models_dir(tmp_path / "models")
    assert main(["--manifest", str(sample_manifest), "--preset", frozen_files_preset, "--stage", "flow",
                 "--representation", "arcface+clip", "--out", str(tmp_path / "run"), "--clip-weights", str(clip),
                 "--flux-path", str(flux), "--models-dir", str(models)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("3 kinds of weights are missing or damaged")
    assert f"FLUX folder {flux}: does not exist" in errors[0] and "--flux-path DIR" in errors[0]
    assert f"CLIP weights file {clip}: not found" in errors[0] and "--clip-weights FILE" in errors[0]
    assert f"{models / SFACE}: sha256 " in errors[0]  # mfhq's WeightsCorrupt: its message, unchanged


@pytest.mark.parametrize("content", [b"garbage" * 10, None])
def test_a_damaged_or_missing_clip_file_is_one_error_saying_where_to_get_it(sample_manifest, frozen_files_preset,
                                                                             tmp_path, caplog, content):
    weights = tmp_path / "open_clip_model.safetensors"
    if content is not None:
        weights.write_bytes(content)
    assert main(["--manifest", str(sample_manifest), "--preset", frozen_files_preset, "--out", str(tmp_path / "run"),
                 "--clip-weights", str(weights), "--steps", "1"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    problem = "unreadable as OmniID-Tiny-ViT weights (" if content else "not found"
    assert len(errors) == 1 and errors[0].startswith(f"CLIP weights file {weights}: {problem}")
    assert "pass --clip-weights FILE (or set OMNIID_CLIP_WEIGHTS=FILE)" in errors[0]


def test_a_damaged_flux_file_or_missing_scheduler_is_named(tmp_path):
    from omniid.errors import FluxWeightsMissing
    from omniid.flux.loading import load_flux

    flow = dataclasses.replace(PRESETS["tiny"].flow, transformer=None, vae=None)
    folder = flux_folder(tmp_path / "flux", seed=1)
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(FluxWeightsMissing, match=f"FLUX folder {folder}: transformer/ is unreadable \\("):
        load_flux(flow, flux_path=folder)
    shutil.rmtree(folder / "scheduler")  # FLUX.1-dev has one: its shift settings are never made up
    with pytest.raises(FluxWeightsMissing, match="missing scheduler/scheduler_config.json"):
        load_flux(flow, flux_path=folder)


def test_eval_names_a_missing_flux_folder_and_the_metric_models_at_once(sample_manifest, kept_faces, sample_run,
                                                                        tmp_path, monkeypatch, caplog):
    out, _, _ = flux_run(sample_manifest, tmp_path, monkeypatch)
    (tmp_path / "evalset").mkdir()
    manifest = write_eval_set(tmp_path / "evalset", kept_faces, sample_run, identities=2, faces=3)
    flux, models = tmp_path / "nowhere", damaged_models_dir(tmp_path / "models")
    assert eval_main(["--checkpoint", str(out), "--manifest", str(manifest), "--out", str(tmp_path / "eval"),
                      "--flux-path", str(flux), "--models-dir", str(models)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("2 kinds of weights are missing or damaged")
    assert f"FLUX folder {flux}: does not exist" in errors[0] and "--preset tiny" not in errors[0]
    assert f"{models / SFACE}: sha256 " in errors[0]


def test_the_flux_download_command_it_names_is_one_the_pins_install(tmp_path):
    """The message for a missing FLUX folder gives a download command to type: its program must be
    one the pinned huggingface_hub installs beside python (2.x has `hf`, no `huggingface-cli`)."""
    import re
    import sys

    from omniid.errors import FluxWeightsMissing
    from omniid.flux.loading import require_flux_folder

    flow = dataclasses.replace(PRESETS["tiny"].flow, transformer=None, vae=None)
    with pytest.raises(FluxWeightsMissing) as error:
        require_flux_folder(flow, flux_path=None)
    command = re.search(r"`(\S+) download black-forest-labs/FLUX\.1-dev --local-dir DIR`", str(error.value))
    assert command, str(error.value)
    assert (Path(sys.executable).parent / command.group(1)).is_file(), command.group(0)
