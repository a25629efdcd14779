"""FLUX's frozen parts, built or loaded: the transformer, the VAE and the scheduler.

    load_flux(flow: FlowConfig, device, dtype) -> FluxParts(transformer, vae, scheduler)
        `tiny`: random `FluxTransformer2DModel` / `AutoencoderKL` from the preset's config dicts,
        drawn from their own seed (RANDOM_FLUX_SEED, ours), so that one config is one model, as one
        FLUX folder is, whatever was built before it (a run's representation, another eval row).
        `paper`: FLUX.1-dev from a local diffusers-format folder (`--flux-path` / $OMNIID_FLUX_PATH);
        missing files raise `FluxWeightsMissing` naming every absent file and where it goes.
    base_model_key(flow, device, dtype, flux_path) -> a hashable key: equal keys, equal FluxParts
        (what `omniid.flux.shared.FluxShare` builds once and lends to several eval rows).
    flux_identity(flow, flux_path) -> {"flux": folder, "flux_sha256": what FLUX it holds}, recorded
        in a run's state.json and compared on resume and at eval (`omniid.continuation`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from mfhq.manifest.io import sha256_of
from omniid.errors import FluxWeightsMissing

FLUX_PATH_ENV = "OMNIID_FLUX_PATH"
# what training needs from the FLUX folder; the text encoders only to write the prompt cache once
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")
TRAIN_PARTS = ("transformer", "vae", "scheduler")
TEXT_PARTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
RANDOM_FLUX_SEED = 0  # a random config's weights (ours): like a folder, the config alone decides them


@dataclass
class FluxParts:
    transformer: torch.nn.Module
    vae: torch.nn.Module
    scheduler: object


def resolve_flux_path(flow, flux_path: str | Path | None = None) -> Path | None:
    path = flux_path or flow.flux_path or os.environ.get(FLUX_PATH_ENV)
    return Path(path) if path else None


def missing_flux_files(folder: Path, parts=TRAIN_PARTS) -> list[str]:
    """The files of `parts` absent from a diffusers-format folder (empty when complete)."""
    missing = []
    for part in parts:
        sub = folder / part
        if part == "scheduler":  # FLUX.1-dev's shift settings: never replaced by built-in ones
            if not (sub / "scheduler_config.json").is_file():
                missing.append("scheduler/scheduler_config.json")
            continue
        if part.startswith("tokenizer"):
            if not sub.is_dir() or not any(sub.iterdir()):
                missing.append(f"{part}/ (tokenizer files)")
            continue
        if not (sub / "config.json").is_file():
            missing.append(f"{part}/config.json")
        names = {p.name for p in sub.glob("*.safetensors*")} if sub.is_dir() else set()
        if part in ("transformer", "vae") and not names & set(WEIGHT_FILES):
            missing.append(f"{part}/{WEIGHT_FILES[0]} (or a sharded .index.json)")
        if part.startswith("text_encoder") and not names:
            missing.append(f"{part}/model*.safetensors")
    return missing


HOW = (f"Download black-forest-labs/FLUX.1-dev (gated: accept its licence on Hugging Face) on a machine with "
       f"internet access, e.g. `hf download black-forest-labs/FLUX.1-dev --local-dir DIR`, copy DIR "
       f"here and pass --flux-path DIR (or set {FLUX_PATH_ENV}=DIR).")
TINY_HINT = " Or train with --preset tiny, which needs no FLUX."  # omniid-train's only: a checkpoint fixes its preset


def require_flux_folder(flow, flux_path=None, parts=TRAIN_PARTS) -> Path:
    folder = resolve_flux_path(flow, flux_path)
    if folder is None:
        raise FluxWeightsMissing(f"the flow stage of this preset needs FLUX.1-dev in diffusers format, and no "
                                 f"folder was given.\n{HOW}")
    if not folder.is_dir():
        raise FluxWeightsMissing(f"FLUX folder {folder}: {'not a folder' if folder.exists() else 'does not exist'}."
                                 f"\n{HOW}")
    missing = missing_flux_files(folder, parts)
    if missing:
        raise FluxWeightsMissing(f"{folder}: not a complete diffusers-format FLUX folder; missing "
                                 f"{', '.join(missing)}.\n{HOW}")
    return folder


def check_flux_files(flow, flux_path=None, prompt_cache: Path | None = None) -> None:
    """omniid-train's check of everything a flow run will need from the FLUX folder, at once: the
    transformer, VAE and scheduler, plus the text encoders if the prompt cache is not there yet.
    Nothing for random configs."""
    if flow.transformer is not None:
        return
    needs_text = prompt_cache is None or not Path(prompt_cache).is_file()
    try:
        require_flux_folder(flow, flux_path, TRAIN_PARTS + (TEXT_PARTS if needs_text else ()))
    except FluxWeightsMissing as error:
        hint = (f"\n(The text encoders are needed once, to write the prompt cache {prompt_cache}; a cache "
                f"written elsewhere with `python -m omniid.flux encode-prompt` can be passed with --prompt-embeds.)"
                if needs_text and prompt_cache else "")
        raise FluxWeightsMissing(f"{error}{TINY_HINT}{hint}") from None


def flow_scheduler(folder: Path | None = None):
    """A FLUX folder's own scheduler (`require_flux_folder` checked its config is there: FLUX.1-dev
    always has one); None: FLUX.1-dev's settings, for a random config."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if folder is not None:
        return FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
    # FLUX.1-dev's scheduler config: resolution-dependent shift
    return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                           base_image_seq_len=256, max_image_seq_len=4096)


def flux_dtype(flow, device) -> torch.dtype:
    """FLUX's dtype on `device`: the run's flow.dtype on CUDA, float32 on CPU."""
    return getattr(torch, flow.dtype) if torch.device(device).type == "cuda" else torch.float32


def base_model_key(flow, device="cpu", dtype: torch.dtype = torch.float32, flux_path=None) -> tuple:
    """What decides the FluxParts `load_flux` returns: a random config (transformer and VAE dicts)
    or the resolved FLUX folder, then the device and dtype. Rows with equal keys can share one."""
    if flow.transformer is not None:
        source = ("random", json.dumps({"transformer": flow.transformer, "vae": flow.vae}, sort_keys=True))
    else:
        folder = resolve_flux_path(flow, flux_path)
        source = ("folder", str(folder.resolve()) if folder is not None else None)
    return (*source, str(torch.device(device)), str(dtype))


IDENTITY_PARTS = ("", "scheduler") + TRAIN_PARTS  # model_index.json, then each part's JSON files and weights
SAMPLES, SAMPLE_BYTES = 16, 1 << 16  # a weight file's fingerprint: 16 blocks of 64 KiB spread over it (1 MiB read)


def _sampled_sha256(path: Path) -> str:
    """sha256 of the file's size and SAMPLES blocks spread evenly over it: reading all of a 24 GB
    transformer at every resume and eval would take a minute, and fine-tuned weights of FLUX's
    architecture (same names, shapes and sizes) differ in nearly every block."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        for n in range(SAMPLES):
            handle.seek(max(0, size - SAMPLE_BYTES) * n // (SAMPLES - 1))
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def flux_identity(flow, flux_path=None) -> dict:
    """What FLUX a run trains or evaluates on: {"flux": the folder (where it lies on this machine,
    not compared), "flux_sha256": a digest of its model_index.json and the scheduler's, transformer's
    and VAE's JSON files (configs, weight indexes) and a sampled fingerprint of each weight file};
    both None for a random config, which the preset itself records."""
    if flow.transformer is not None:
        return {"flux": None, "flux_sha256": None}
    folder = require_flux_folder(flow, flux_path)
    files = {}
    for part in IDENTITY_PARTS:
        for path in sorted((folder / part).glob("*.json")) if (folder / part).is_dir() else ():
            files[path.relative_to(folder).as_posix()] = sha256_of(path)
        for path in sorted((folder / part).glob("*.safetensors")) if part else ():
            files[path.relative_to(folder).as_posix()] = _sampled_sha256(path)
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"flux": str(folder.resolve()), "flux_sha256": digest}


def _random_flux(flow, device, dtype: torch.dtype):
    """A random-weight config's transformer and VAE, from RANDOM_FLUX_SEED; the caller's random
    state is left as it was."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    device = torch.device(device)
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []  # manual_seed seeds them all
    previous = torch.get_default_dtype()
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(RANDOM_FLUX_SEED)
        # built where it runs and in its dtype: a 12B config never passes through RAM or fp32
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                return FluxTransformer2DModel(**flow.transformer), AutoencoderKL(**flow.vae)
        finally:
            torch.set_default_dtype(previous)


def load_flux(flow, device="cpu", dtype: torch.dtype = torch.float32, flux_path=None) -> FluxParts:
    """The frozen transformer and VAE (eval mode, requires_grad False) on `device` in `dtype`."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    if flow.transformer is not None:  # a random-weight config (tiny preset, tests, benchmarks)
        transformer, vae = _random_flux(flow, device, dtype)
        scheduler = flow_scheduler(None)
    else:
        folder = require_flux_folder(flow, flux_path)
        # straight to this rank's device: 8 ranks each staging 24 GB in host RAM first needed ~190 GB
        placed = {"torch_dtype": dtype, "device_map": {"": torch.device(device)}}
        transformer = _from_folder(FluxTransformer2DModel, folder, "transformer", placed)
        vae = _from_folder(AutoencoderKL, folder, "vae", placed)
        scheduler = _from_folder(flow_scheduler, folder, "scheduler", None)
    for module in (transformer, vae):
        module.requires_grad_(False)
        module.eval()
        module.to(device)
        if module.dtype != dtype:  # only random configs get here (from_pretrained loads in dtype)
            module.to(dtype)
    return FluxParts(transformer, vae, scheduler)


def _from_folder(load, folder: Path, part: str, placed: dict | None):
    """One part of a FLUX folder, loaded; a damaged file (a truncated download, bad JSON) is a
    FluxWeightsMissing naming the part's folder and the library's reason, not a traceback."""
    try:
        return load(folder) if placed is None else load.from_pretrained(folder, subfolder=part, **placed)
    except torch.OutOfMemoryError:  # the machine's problem, not the folder's
        raise
    except (OSError, ValueError, RuntimeError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise FluxWeightsMissing(f"FLUX folder {folder}: {part}/ is unreadable ({reason}).\n{HOW}") from None
