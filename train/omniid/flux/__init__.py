"""FLUX for the flow-matching decoder, in diffusers' own order: the IP-Adapter's processors live in
`omniid.adapter`; this package loads FLUX and its inputs, then samples with it.

    loading.py    load_flux(flow, device, dtype) -> FluxParts(transformer, vae, scheduler); the
                  FLUX folder's checks (`FluxWeightsMissing` names every absent file)
    prompt.py     the fixed prompt encoded once into a safetensors cache (ensure/load/write_prompt_embeds)
    latents.py    encode_latents, pack_latents / unpack_latents, latent_image_ids (FLUX's 2x2 packing)
    sampling.py   sample(parts, prompt_embeds, pooled, tokens, adapter, guidance=...) through diffusers'
                  FluxPipeline; build_pipeline(parts, prompts, guidance)
    shared.py     FluxShare: one FLUX per base model, lent to several rows of omniid-eval
    run.py        load_flow_run(path) -> FlowRun: everything `sample` needs from a flow-stage run, and
                  `run.pipeline()`: a FluxPipeline that takes text prompts
    cli.py        `python -m omniid.flux encode-prompt --preset paper --flux-path DIR --out FILE`

The names below are the package's public API, so `omniid.flux.sample` and the like keep working.
"""
from omniid.checkpoint import PROMPT_EMBEDS_FILE
from omniid.errors import FluxWeightsMissing
from omniid.flux.cli import main
from omniid.flux.latents import encode_latents, latent_image_ids, pack_latents, unpack_latents, vae_scale_factor
from omniid.flux.loading import (FLUX_PATH_ENV, TEXT_PARTS, TRAIN_PARTS, WEIGHT_FILES, FluxParts, check_flux_files,
                                 flow_scheduler, load_flux, missing_flux_files, require_flux_folder, resolve_flux_path)
from omniid.flux.prompt import (encode_prompt_with_text_encoders, ensure_prompt_embeds, load_prompt_embeds,
                                prompt_embeddings, random_prompt_embeds, write_prompt_embeds)
from omniid.flux.run import FlowRun, load_flow_run
from omniid.flux.sampling import build_pipeline, sample
from omniid.flux.shared import FluxShare

__all__ = ["FLUX_PATH_ENV", "PROMPT_EMBEDS_FILE", "TEXT_PARTS", "TRAIN_PARTS", "WEIGHT_FILES", "FlowRun",
           "FluxParts", "FluxShare", "FluxWeightsMissing", "build_pipeline", "check_flux_files", "encode_latents",
           "encode_prompt_with_text_encoders", "ensure_prompt_embeds", "flow_scheduler", "latent_image_ids",
           "load_flow_run", "load_flux", "load_prompt_embeds", "main", "missing_flux_files", "pack_latents",
           "prompt_embeddings", "random_prompt_embeds", "require_flux_folder", "resolve_flux_path", "sample",
           "unpack_latents", "vae_scale_factor", "write_prompt_embeds"]
