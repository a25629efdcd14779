"""The FLUX side of the flow stage on real diffusers classes with tiny random configs: the adapter
(step 0 and scale 0 equal the base model, detach restores exactly, save/load alone), FLUX's
latent packing, the prompt cache, sampling through FluxPipeline, and missing FLUX files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import FluxPipeline

from omniid.adapter import ADAPTER_CONFIG, ADAPTER_FILE, OmniIDAdapter
from omniid.config import get_preset
from omniid.flux import main as flux_main
from omniid.flux import (FluxWeightsMissing, build_pipeline, ensure_prompt_embeds, latent_image_ids, load_flux, load_prompt_embeds,
                         pack_latents, require_flux_folder, sample, unpack_latents)
from omniid_fixtures import one_torch_thread  # noqa: F401  (pytest fixture)

FLOW = get_preset("tiny", stage="flow").flow
TOKENS, DIM = 5, 24


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    return load_flux(FLOW)


def _inputs(parts, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    tf = parts.transformer.config
    latents = torch.randn(n, 16, tf.in_channels, generator=g)  # 4x4 packed tokens
    return {
        "hidden_states": latents, "timestep": torch.rand(n, generator=g),
        "encoder_hidden_states": torch.randn(n, 3, tf.joint_attention_dim, generator=g),
        "pooled_projections": torch.randn(n, tf.pooled_projection_dim, generator=g),
        "guidance": torch.full((n,), 3.5), "txt_ids": torch.zeros(3, 3), "img_ids": latent_image_ids(8, 8),
        "return_dict": False,
    }


def _run(transformer, inputs, tokens=None):
    kwargs = {"joint_attention_kwargs": {"ip_adapter_image_embeds": [tokens[:, None]]}} if tokens is not None else {}
    with torch.no_grad():
        return transformer(**inputs, **kwargs)[0]


def test_step_zero_and_scale_zero_equal_the_base_model_and_detach_restores(parts):
    """Equal up to float rounding (~1e-7): diffusers' IP processor feeds `to_out` a non-contiguous
    tensor where the plain processor makes it contiguous, which changes the matmul's summation."""
    same = lambda a, b: torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # noqa: E731
    transformer = parts.transformer
    inputs = _inputs(parts)
    tokens = torch.randn(2, TOKENS, DIM, generator=torch.Generator().manual_seed(1))
    before = dict(transformer.attn_processors)
    keys_before = set(transformer.state_dict())
    base = _run(transformer, inputs)
    adapter = OmniIDAdapter.for_transformer(transformer, TOKENS, DIM).attach(transformer)
    assert all(type(p).__name__ == "FluxIPAdapterAttnProcessor" for n, p in transformer.attn_processors.items()
               if n.startswith("transformer_blocks."))
    same(_run(transformer, inputs, tokens), base)                         # to_v_ip starts at zero
    with torch.no_grad():
        for proc in adapter.processors:
            proc.to_v_ip[0].weight.normal_()
    conditioned = _run(transformer, inputs, tokens)
    assert (conditioned - base).abs().max() > 1e-2                        # the adapter does act...
    adapter.set_scale(0.0)
    same(_run(transformer, inputs, tokens), base)                         # ...and scale 0 turns it off
    adapter.set_scale(1.0)
    assert torch.equal(_run(transformer, inputs, tokens), conditioned)
    adapter.detach()
    after = transformer.attn_processors
    assert all(after[name] is proc for name, proc in before.items())
    assert set(transformer.state_dict()) == keys_before and "encoder_hid_proj" not in transformer._modules
    assert torch.equal(_run(transformer, inputs), base)


def test_adapter_saves_and_loads_alone_from_run_pointer_or_step(parts, tmp_path):
    torch.manual_seed(2)
    adapter = OmniIDAdapter.for_transformer(parts.transformer, TOKENS, DIM, scale=0.7)
    with torch.no_grad():
        for param in adapter.parameters():
            param.normal_()
    step = tmp_path / "run" / "checkpoints" / "step-00000003"
    adapter.save_pretrained(step)
    assert {p.name for p in step.iterdir()} == {ADAPTER_FILE, ADAPTER_CONFIG}
    (step.parent / "latest").write_text(step.name)
    for path in (tmp_path / "run", step.parent / "latest", step):
        loaded = OmniIDAdapter.from_pretrained(path)
        assert loaded.scale == 0.7
        for (name, a), (_, b) in zip(adapter.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), name
    (step / ADAPTER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=str(step)):
        OmniIDAdapter.from_pretrained(step)


def test_adapter_attaches_to_a_pipeline_and_refuses_another_shape(parts):
    adapter = OmniIDAdapter.for_transformer(parts.transformer, TOKENS, DIM)
    adapter.attach(build_pipeline(parts))
    assert adapter.attached and parts.transformer.attn_processors["transformer_blocks.0.attn.processor"] \
        is adapter.processors[0]
    adapter.detach()
    with pytest.raises(ValueError, match="3 double-stream blocks"):
        OmniIDAdapter(TOKENS, DIM, 32, hidden_size=32, num_blocks=3).attach(parts.transformer)


def test_packing_matches_flux_pipeline():
    latents = torch.randn(2, 4, 6, 8)
    packed = pack_latents(latents)
    assert torch.equal(packed, FluxPipeline._pack_latents(latents, 2, 4, 6, 8))
    assert torch.equal(unpack_latents(packed, 6, 8), latents)
    assert torch.equal(latent_image_ids(6, 8), FluxPipeline._prepare_latent_image_ids(2, 3, 4, "cpu", torch.float32))


def test_tiny_prompt_cache_has_flux_shapes(tmp_path):
    path = ensure_prompt_embeds(FLOW, tmp_path / "p.safetensors")
    embeds, pooled, meta = load_prompt_embeds(path)
    assert embeds.shape == (1, FLOW.max_sequence_length, FLOW.transformer["joint_attention_dim"])
    assert pooled.shape == (1, FLOW.transformer["pooled_projection_dim"])
    assert meta["prompt"] == "photo of a person."
    assert ensure_prompt_embeds(FLOW, path) == path  # cached: not rewritten
    assert flux_main(["encode-prompt", "--preset", "tiny", "--out", str(tmp_path / "cli.safetensors")]) == 0
    assert torch.equal(load_prompt_embeds(tmp_path / "cli.safetensors")[0], embeds)


def test_sampling_through_flux_pipeline_with_the_adapter(parts):
    torch.manual_seed(3)
    adapter = OmniIDAdapter.for_transformer(parts.transformer, TOKENS, DIM)
    with torch.no_grad():
        for proc in adapter.processors:
            proc.to_v_ip[0].weight.normal_()
    embeds = torch.randn(1, 8, 32), torch.randn(1, 32)
    tokens = torch.randn(2, TOKENS, DIM)
    before = dict(parts.transformer.attn_processors)
    run = lambda toks, scale=None: sample(parts, *embeds, toks, adapter, height=32, width=32,  # noqa: E731
                                          guidance=3.5, steps=2, scale=scale,
                                          generator=torch.Generator().manual_seed(0))
    images = run(tokens)
    assert images.shape == (2, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    assert not torch.allclose(run(tokens[[1, 0]]), images)     # the tokens steer the sample
    plain = sample(parts, *embeds, height=32, width=32, guidance=3.5, steps=2,
                   generator=torch.Generator().manual_seed(0))
    assert torch.allclose(run(tokens, scale=0.0)[:1], plain, atol=1e-6)
    assert all(parts.transformer.attn_processors[n] is p for n, p in before.items())   # detached after
    bf16 = load_flux(FLOW, dtype=torch.bfloat16)   # FLUX in bf16 with the fp32 adapter, as trained
    images = sample(bf16, *embeds, tokens, OmniIDAdapter.for_transformer(bf16.transformer, TOKENS, DIM),
                    height=32, width=32, guidance=3.5, steps=2)
    assert images.dtype == torch.float32 and torch.isfinite(images).all()


def test_paper_flux_folder_missing_files_are_named(tmp_path):
    flow = get_preset("paper", stage="flow").flow
    with pytest.raises(FluxWeightsMissing, match="--flux-path"):
        require_flux_folder(flow, None)
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    with pytest.raises(FluxWeightsMissing) as error:
        require_flux_folder(flow, tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message and "transformer/config.json" in message
    assert "vae/diffusion_pytorch_model.safetensors" in message and "vae/config.json" not in message


@pytest.fixture(scope="module")
def flux_folder(tmp_path_factory) -> Path:
    """A diffusers-format FLUX folder as FLUX.1-dev's is laid out, with tiny random weights and
    hand-made tokenizers: the paper preset's loading path, without the gated download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

    folder = tmp_path_factory.mktemp("flux-dev")
    scratch = tmp_path_factory.mktemp("tokenizer-files")
    (scratch / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}))
    (scratch / "merges.txt").write_text("#version: 0.2\n")
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(w, -1.0) for w in ("▁photo", "▁of", "▁a", "▁person", ".")]
    t5_tokens = Tokenizer(models.Unigram(pieces, unk_id=2))  # T5's kind of tokenizer, as T5Tokenizer reloads it
    t5_tokens.pre_tokenizer, t5_tokens.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    torch.manual_seed(0)
    parts = load_flux(FLOW)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=77))
    t5 = T5EncoderModel(T5Config(vocab_size=8, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4))
    FluxPipeline(scheduler=parts.scheduler, vae=parts.vae, transformer=parts.transformer,
                 text_encoder=clip, tokenizer=CLIPTokenizer(str(scratch / "vocab.json"), str(scratch / "merges.txt"),
                                         model_max_length=77),
                 text_encoder_2=t5, tokenizer_2=T5TokenizerFast(tokenizer_object=t5_tokens, eos_token="</s>",
                                                                pad_token="<pad>", unk_token="<unk>", extra_ids=0),
                 ).save_pretrained(folder)
    return folder


def test_paper_loading_path_encodes_the_prompt_once_and_loads_flux_from_the_folder(flux_folder, tmp_path):
    from dataclasses import replace

    from omniid.objectives import build_objective

    tiny = get_preset("tiny", stage="flow")
    flow = replace(tiny.flow, transformer=None, vae=None, flux_path=str(flux_folder))  # as the paper preset
    cache = tmp_path / "prompt_embeds.safetensors"
    model = build_objective("flow", replace(tiny, flow=flow), prompt_embeds=cache)
    embeds, pooled, meta = load_prompt_embeds(cache)
    assert embeds.shape == (1, 8, 32) and pooled.shape == (1, 32) and meta["source"] == str(flux_folder)
    assert not any("text_encoder" in name for name, _ in model.named_modules())   # never held in training
    assert model.transformer.config.num_layers == 2 and not model.transformer.training
    batch = {"inputs": torch.randn(1, 3, 3, 32, 32), "input_valid": torch.ones(1, 3, dtype=torch.bool),
             "targets": torch.rand(1, 2, 3, 32, 32) * 2 - 1}
    assert torch.isfinite(model(batch, torch.Generator().manual_seed(0)).loss)
    with pytest.raises(ValueError, match="photo of a person"):   # a cache of another prompt is refused
        ensure_prompt_embeds(replace(flow, prompt="a face."), cache)
