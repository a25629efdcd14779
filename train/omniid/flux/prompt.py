"""The flow stage's fixed prompt, encoded once and cached, so training and generation never hold a
text encoder.

    ensure_prompt_embeds(flow, path) -> Path
        The fixed prompt encoded once (T5 -> `prompt_embeds` [1, S, 4096], CLIP pooled ->
        `pooled_prompt_embeds` [1, 768]) into a safetensors file. The tiny preset writes seeded
        random embeddings of its shapes.
        CLI: `python -m omniid.flux encode-prompt --preset paper --flux-path DIR --out FILE`.
    load_prompt_embeds(path) / write_prompt_embeds(path, prompt_embeds, pooled, meta)
    prompt_embeddings(flow, prompt, flux_path=None) -> (prompt_embeds, pooled)
        Any other prompt: FLUX's text encoders from the FLUX folder; a random FLUX config has none,
        so seeded random embeddings of the prompt stand in (ours; they mean nothing).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from omniid.errors import PromptCacheError, PromptCacheMissing
from omniid.flux.loading import TEXT_PARTS, require_flux_folder

log = logging.getLogger("omniid.flux")


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
        raise PromptCacheMissing(f"prompt embeddings file not found: {path}")
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
        if keys != {"prompt_embeds", "pooled_prompt_embeds"}:
            raise PromptCacheError(f"{path}: expected tensors prompt_embeds and pooled_prompt_embeds, "
                                   f"found {sorted(keys)}")
        meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        return f.get_tensor("prompt_embeds"), f.get_tensor("pooled_prompt_embeds"), meta


def random_prompt_embeds(flow, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What stands in for encoded prompts with a random FLUX config (it has no text encoders):
    seeded random embeddings of its shapes, [1, S, J] and [1, P]."""
    g = torch.Generator().manual_seed(seed)
    prompt_embeds = torch.randn(1, flow.max_sequence_length, flow.transformer["joint_attention_dim"], generator=g)
    pooled = torch.randn(1, flow.transformer["pooled_projection_dim"], generator=g)
    return prompt_embeds, pooled


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


def prompt_embeddings(flow, prompt: str, flux_path=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A prompt's (prompt_embeds [1, S, J], pooled [1, P]): encoded by FLUX's T5 + CLIP for a real
    FLUX; for a random config (tiny), random embeddings seeded by the prompt's text, so one prompt
    always gives the same ones."""
    if flow.transformer is not None:
        return random_prompt_embeds(flow, int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16))
    folder = require_flux_folder(flow, flux_path, TEXT_PARTS)
    return encode_prompt_with_text_encoders(folder, prompt, flow.max_sequence_length)


def ensure_prompt_embeds(flow, path: Path, flux_path=None) -> Path:
    """The cache at `path`, written first if absent (random of the right shapes for a tiny config)."""
    path = Path(path)
    if path.is_file():
        prompt_embeds, pooled, meta = load_prompt_embeds(path)
        if meta.get("prompt") != flow.prompt:
            raise PromptCacheError(f"{path}: holds the prompt {meta.get('prompt')!r}, the preset says "
                                   f"{flow.prompt!r}; delete the file to encode the new prompt")
        return path
    if flow.transformer is not None:
        prompt_embeds, pooled = random_prompt_embeds(flow, 0)
        source = "random (tiny config)"
    else:
        folder = require_flux_folder(flow, flux_path, TEXT_PARTS)
        log.info("encoding the prompt %r once with T5 + CLIP from %s", flow.prompt, folder)
        prompt_embeds, pooled = encode_prompt_with_text_encoders(folder, flow.prompt, flow.max_sequence_length)
        source = str(folder)
    return write_prompt_embeds(path, prompt_embeds, pooled, {"prompt": flow.prompt, "source": source,
                                                             "max_sequence_length": flow.max_sequence_length})
