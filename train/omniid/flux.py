"""FLUX components for the flow-matching decoder: build or load, prompt cache, latents, sampling.

    load_flux(flow: FlowConfig, device, dtype) -> FluxParts(transformer, vae, scheduler)
        `tiny`: random `FluxTransformer2DModel` / `AutoencoderKL` from the preset's config dicts.
        `paper`: FLUX.1-dev from a local diffusers-format folder (`--flux-path` / $OMNIID_FLUX_PATH);
        missing files raise `FluxWeightsMissing` naming every absent file and where it goes.
    load_prompt_embeds(path) / write_prompt_embeds(path, prompt_embeds, pooled, meta)
    ensure_prompt_embeds(flow, path) -> Path
        The fixed prompt encoded once (T5 -> `prompt_embeds` [1, S, 4096], CLIP pooled ->
        `pooled_prompt_embeds` [1, 768]) into a safetensors file, so that training and generation
        never hold a text encoder. The tiny preset writes seeded random embeddings of its shapes.
        CLI: `python -m omniid.flux encode-prompt --preset paper --flux-path DIR --out FILE`.
    encode_latents(vae, images [B,3,H,W] in [-1,1], generator) -> latents [B, c, h, w] (shifted, scaled)
    pack_latents(latents [B,c,h,w]) -> [B, h/2*w/2, 4c];  unpack_latents(packed, h, w) -> [B,c,h,w]
    latent_image_ids(h, w, device, dtype) -> [h/2*w/2, 3]   (FLUX's 2x2 packing, as FluxPipeline does)
    sample(parts, prompt_embeds, pooled_prompt_embeds, tokens=None, adapter=None, *, height, width,
           steps=28, guidance=3.5, scale=None, generator=None, output_type="pt") -> images
        Generation through diffusers' own `FluxPipeline` with the text encoders set to None: the
        cached embeddings are passed in, and `tokens` [B, N, D] (any representation's output) go
        to the attached `OmniIDAdapter` as `ip_adapter_image_embeds`. Returns [B, 3, H, W] in [0, 1].
    load_flow_run(path, device, flux_path=None) -> FlowRun(parts, prompt_embeds, pooled_prompt_embeds,
                                                           adapter, flow, checkpoint)
        Everything `sample` needs from a flow-stage run (a run folder, `checkpoints/latest` or a
        step folder); its encoder: `OmniIDEncoder.from_pretrained(run.checkpoint)`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

log = logging.getLogger(__name__)

FLUX_PATH_ENV = "OMNIID_FLUX_PATH"
PROMPT_EMBEDS_FILE = "prompt_embeds.safetensors"
# what training needs from the FLUX folder; the text encoders only to write the prompt cache once
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")
TRAIN_PARTS = ("transformer", "vae")
TEXT_PARTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")


class FluxWeightsMissing(FileNotFoundError):
    """The preset wants FLUX files that are not on this machine; the message lists them."""


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


def require_flux_folder(flow, flux_path=None, parts=TRAIN_PARTS) -> Path:
    folder = resolve_flux_path(flow, flux_path)
    how = (f"Download black-forest-labs/FLUX.1-dev (gated: accept its licence on Hugging Face) on a machine "
           f"with internet access, e.g. `huggingface-cli download black-forest-labs/FLUX.1-dev --local-dir DIR`, "
           f"copy DIR here and pass --flux-path DIR (or set {FLUX_PATH_ENV}=DIR); or train with --preset tiny.")
    if folder is None:
        raise FluxWeightsMissing(f"the flow stage of this preset needs FLUX.1-dev in diffusers format, and no "
                                 f"folder was given.\n{how}")
    missing = missing_flux_files(folder, parts)
    if missing:
        raise FluxWeightsMissing(f"{folder}: not a complete diffusers-format FLUX folder; missing "
                                 f"{', '.join(missing)}.\n{how}")
    return folder


def check_flux_files(flow, flux_path=None, prompt_cache: Path | None = None) -> None:
    """Everything a flow run will need from the FLUX folder, checked at once: the transformer and
    VAE, plus the text encoders if the prompt cache is not there yet. Nothing for random configs."""
    if flow.transformer is not None:
        return
    needs_text = prompt_cache is None or not Path(prompt_cache).is_file()
    try:
        require_flux_folder(flow, flux_path, TRAIN_PARTS + (TEXT_PARTS if needs_text else ()))
    except FluxWeightsMissing as error:
        hint = (f"\n(The text encoders are needed once, to write the prompt cache {prompt_cache}; a cache "
                f"written elsewhere with `python -m omniid.flux encode-prompt` can be passed with --prompt-embeds.)"
                if needs_text and prompt_cache else "")
        raise FluxWeightsMissing(f"{error}{hint}") from None


def flow_scheduler(folder: Path | None = None):
    from diffusers import FlowMatchEulerDiscreteScheduler

    if folder is not None and (folder / "scheduler" / "scheduler_config.json").is_file():
        return FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
    # FLUX.1-dev's scheduler config: resolution-dependent shift
    return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                           base_image_seq_len=256, max_image_seq_len=4096)


def load_flux(flow, device="cpu", dtype: torch.dtype = torch.float32, flux_path=None) -> FluxParts:
    """The frozen transformer and VAE (eval mode, requires_grad False) on `device` in `dtype`."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    if flow.transformer is not None:  # a random-weight config (tiny preset, tests, benchmarks)
        # built where it runs and in its dtype: a 12B config never passes through RAM or fp32
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                transformer = FluxTransformer2DModel(**flow.transformer)
                vae = AutoencoderKL(**flow.vae)
        finally:
            torch.set_default_dtype(previous)
        scheduler = flow_scheduler(None)
    else:
        folder = require_flux_folder(flow, flux_path)
        transformer = FluxTransformer2DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=dtype)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype)
        scheduler = flow_scheduler(folder)
    for module in (transformer, vae):
        module.requires_grad_(False)
        module.eval()
        module.to(device)
        if module.dtype != dtype:  # only random configs get here (from_pretrained loads in dtype)
            module.to(dtype)
    return FluxParts(transformer, vae, scheduler)


def write_prompt_embeds(path: Path, prompt_embeds: torch.Tensor, pooled: torch.Tensor, meta: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({"prompt_embeds": prompt_embeds.detach().float().contiguous().cpu(),
               "pooled_prompt_embeds": pooled.detach().float().contiguous().cpu()},
              str(tmp), metadata={"meta": json.dumps(meta)})
    os.replace(tmp, path)
    return path


def load_prompt_embeds(path: Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """-> prompt_embeds [1, S, J], pooled_prompt_embeds [1, P], metadata (prompt, source)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt embeddings file not found: {path}")
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
        if keys != {"prompt_embeds", "pooled_prompt_embeds"}:
            raise ValueError(f"{path}: expected tensors prompt_embeds and pooled_prompt_embeds, found {sorted(keys)}")
        meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        return f.get_tensor("prompt_embeds"), f.get_tensor("pooled_prompt_embeds"), meta


def encode_prompt_with_text_encoders(folder: Path, prompt: str, max_sequence_length: int):
    """T5 + CLIP from the FLUX folder, on the GPU if there is one; freed on return."""
    from diffusers import FluxPipeline

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    pipe = FluxPipeline.from_pretrained(folder, transformer=None, vae=None, torch_dtype=dtype).to(device)
    with torch.no_grad():
        prompt_embeds, pooled, _ = pipe.encode_prompt(prompt=prompt, prompt_2=prompt, device=device,
                                                      max_sequence_length=max_sequence_length)
    del pipe
    return prompt_embeds, pooled


def ensure_prompt_embeds(flow, path: Path, flux_path=None) -> Path:
    """The cache at `path`, written first if absent (random of the right shapes for a tiny config)."""
    path = Path(path)
    if path.is_file():
        prompt_embeds, pooled, meta = load_prompt_embeds(path)
        if meta.get("prompt") != flow.prompt:
            raise ValueError(f"{path}: holds the prompt {meta.get('prompt')!r}, the preset says {flow.prompt!r}; "
                             f"delete the file to encode the new prompt")
        return path
    if flow.transformer is not None:
        g = torch.Generator().manual_seed(0)
        prompt_embeds = torch.randn(1, flow.max_sequence_length, flow.transformer["joint_attention_dim"], generator=g)
        pooled = torch.randn(1, flow.transformer["pooled_projection_dim"], generator=g)
        source = "random (tiny config)"
    else:
        folder = require_flux_folder(flow, flux_path, TEXT_PARTS)
        log.info("encoding the prompt %r once with T5 + CLIP from %s", flow.prompt, folder)
        prompt_embeds, pooled = encode_prompt_with_text_encoders(folder, flow.prompt, flow.max_sequence_length)
        source = str(folder)
    return write_prompt_embeds(path, prompt_embeds, pooled, {"prompt": flow.prompt, "source": source,
                                                             "max_sequence_length": flow.max_sequence_length})


def vae_scale_factor(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def encode_latents(vae, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """images [B, 3, H, W] in [-1, 1] -> latents [B, c, H/f, W/f], shifted and scaled as FLUX expects."""
    posterior = vae.encode(images.to(vae.dtype)).latent_dist
    latents = posterior.sample(generator=generator)
    shift = vae.config.shift_factor or 0.0
    return (latents - shift) * vae.config.scaling_factor


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """[B, c, h, w] -> [B, (h/2)(w/2), 4c]: FLUX's 2x2 patches, the layout FluxPipeline uses."""
    b, c, h, w = latents.shape
    if h % 2 or w % 2:
        raise ValueError(f"latent side {h}x{w} must be even to pack 2x2")
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(packed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, (h/2)(w/2), 4c] -> [B, c, h, w]; height/width are the latent's (not the image's) sides."""
    b, _, channels = packed.shape
    x = packed.view(b, height // 2, width // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels // 4, height, width)


def latent_image_ids(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[(h/2)(w/2), 3]: (0, row, col) per packed token, for FLUX's rotary embedding."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] = torch.arange(height // 2)[:, None]
    ids[..., 2] = torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def build_pipeline(parts: FluxParts):
    """diffusers' FluxPipeline over our transformer + VAE, with no text encoders (cached prompts)."""
    from diffusers import FluxPipeline

    return FluxPipeline(scheduler=parts.scheduler, vae=parts.vae, text_encoder=None, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None, transformer=parts.transformer)


@torch.no_grad()
def sample(parts: FluxParts, prompt_embeds: torch.Tensor, pooled_prompt_embeds: torch.Tensor,
           tokens: torch.Tensor | None = None, adapter=None, *, height: int, width: int, steps: int = 28,
           guidance: float = 3.5, scale: float | None = None, generator=None, output_type: str = "pt"):
    """Generate one image per row of `tokens` ([B, N, D]; or `batch` images unconditioned when None).

    `adapter` (an `OmniIDAdapter`) is attached for the call and detached after, so `parts` is left
    as it was. prompt embeddings: [1, S, J] / [1, P], as cached.
    """
    pipe = build_pipeline(parts)
    pipe.set_progress_bar_config(disable=True)
    device, dtype = parts.transformer.device, parts.transformer.dtype
    batch = 1 if tokens is None else tokens.shape[0]
    kwargs = {}
    if adapter is not None and tokens is not None:
        adapter.attach(parts.transformer)
        if scale is not None:
            adapter.set_scale(scale)
        embeds = [tokens.to(device, dtype)[:, None]]        # [B, 1 image, N, D] per adapter
        # without negative embeds FluxPipeline would try its image encoder (None) for a blank image
        kwargs = {"ip_adapter_image_embeds": embeds, "negative_ip_adapter_image_embeds": [torch.zeros_like(embeds[0])]}
    try:
        # a bf16 FLUX with an fp32 adapter (as trained): autocast casts per op, as in training
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = pipe(prompt_embeds=prompt_embeds.to(device, dtype).expand(batch, -1, -1),
                       pooled_prompt_embeds=pooled_prompt_embeds.to(device, dtype).expand(batch, -1),
                       height=height, width=width, num_inference_steps=steps, guidance_scale=guidance,
                       generator=generator, output_type=output_type, **kwargs)
    finally:
        if kwargs:
            adapter.detach()
    images = out.images
    return images.float() if torch.is_tensor(images) else images


@dataclass
class FlowRun:
    parts: FluxParts
    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor
    adapter: torch.nn.Module
    flow: object
    checkpoint: Path


def load_flow_run(path: str | Path, device="cpu", flux_path=None) -> FlowRun:
    """FLUX (bf16 on CUDA, fp32 on CPU), the run's prompt cache and adapter, from a flow-stage run."""
    from omniid.adapter import OmniIDAdapter
    from omniid.checkpoint import read_state, resolve_checkpoint
    from omniid.config import FlowConfig

    folder = resolve_checkpoint(path)
    run = folder.parent.parent
    if not (run / "preset.json").is_file():
        raise FileNotFoundError(f"{folder}: not inside a run folder (no {run / 'preset.json'})")
    flow = FlowConfig(**json.loads((run / "preset.json").read_text())["flow"])
    recorded = read_state(folder).get("prompt_embeds")
    cache = Path(recorded) if recorded and Path(recorded).is_file() else run / PROMPT_EMBEDS_FILE
    prompt_embeds, pooled, _ = load_prompt_embeds(cache)
    device = torch.device(device)
    dtype = getattr(torch, flow.dtype) if device.type == "cuda" else torch.float32
    parts = load_flux(flow, device, dtype, flux_path)
    adapter = OmniIDAdapter.from_pretrained(folder, device=device)
    return FlowRun(parts, prompt_embeds.to(device), pooled.to(device), adapter, flow, folder)


def main(argv: list[str] | None = None) -> int:
    from omniid.config import PRESETS, get_preset

    p = argparse.ArgumentParser(prog="python -m omniid.flux",
                                description="Encode the flow stage's fixed prompt once into a safetensors file.")
    sub = p.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode-prompt", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    enc.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    enc.add_argument("--flux-path", help=f"diffusers-format FLUX.1-dev folder (or ${FLUX_PATH_ENV})")
    enc.add_argument("--out", required=True, help=f"the cache file (training reads OUT/{PROMPT_EMBEDS_FILE})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    flow = get_preset(args.preset).flow
    try:
        path = ensure_prompt_embeds(flow, Path(args.out), args.flux_path)
    except (FluxWeightsMissing, ValueError) as error:
        log.error("%s", error)
        return 2
    log.info("prompt embeddings: %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
