"""The Python API as a diffusers user calls it: `OmniIDAdapter.attach(pipe)` + `ip_adapter_kwargs(tokens)`
on FluxPipeline / FluxControlNetPipeline (tiny random FLUX, real diffusers classes), with batches of
several identities. Each image of a batch must be the image its identity gives alone with the same
seed: diffusers stacks the given embeds batch x num_images_per_prompt times and its processor views
the stack per image, so before `omniid.adapter.fit_ip_batch` every image attended to every identity.
The adapter's IP layers get random weights (a strong identity signal), so a blend shows."""
from __future__ import annotations

import pytest
import torch
from diffusers import FluxControlNetModel, FluxControlNetPipeline

from omniid.adapter import OmniIDAdapter
from omniid.config import get_preset
from omniid.flux import build_pipeline, load_flux, prompt_embeddings, sample
from omniid.generation import ip_adapter_kwargs
from omniid_fixtures import one_torch_thread  # noqa: F401  (pytest fixture)

FLOW = get_preset("tiny", stage="flow").flow
PROMPT = "photo of a person."
SAME = dict(rtol=0, atol=1e-5)  # batched matmuls sum in another order than one image's


@pytest.fixture(scope="module")
def rig():
    """(parts, adapter, FluxPipeline taking text prompts, tokens of 3 identities)."""
    torch.manual_seed(0)
    parts = load_flux(FLOW)
    adapter = OmniIDAdapter.for_transformer(parts.transformer, 5, 24)
    with torch.no_grad():
        for proc in adapter.processors:
            proc.to_k_ip[0].weight.normal_()
            proc.to_v_ip[0].weight.normal_()
    pipe = build_pipeline(parts, prompts=lambda text: prompt_embeddings(FLOW, text), guidance=3.5)
    pipe.set_progress_bar_config(disable=True)
    tokens = torch.randn(3, 5, 24, generator=torch.Generator().manual_seed(1))
    return parts, adapter, pipe, tokens


def _call(pipe, tokens, seeds, prompt=PROMPT, side=(32, 32), **kwargs):
    return pipe(prompt, height=side[0], width=side[1], num_inference_steps=2, output_type="pt",
                generator=[torch.Generator().manual_seed(s) for s in seeds], **ip_adapter_kwargs(tokens),
                **kwargs).images


@pytest.fixture
def attached(rig):
    parts, adapter, pipe, tokens = rig
    adapter.attach(pipe)
    yield pipe, tokens
    adapter.detach()
    assert not parts.transformer._forward_pre_hooks  # detach takes the batch hook away too


def _alone(pipe, tokens, wanted, **kwargs):
    """Image per (identity, seed), each generated alone."""
    return torch.stack([_call(pipe, tokens[i:i + 1], [s], **kwargs)[0] for i, s in wanted])


def test_a_list_of_prompts_gives_each_image_its_identity(attached):
    pipe, tokens = attached
    batch = _call(pipe, tokens[:2], [0, 1], prompt=[PROMPT, PROMPT])
    alone = _alone(pipe, tokens, [(0, 0), (1, 1)])
    assert (alone[0] - alone[1]).abs().max() > 1e-2  # the identities do differ
    torch.testing.assert_close(batch, alone, **SAME)


def test_num_images_per_prompt_shares_the_identities_out(attached):
    """1 identity: every image; one per prompt: that prompt's images; one per image: its own."""
    pipe, tokens = attached
    one = _call(pipe, tokens[:1], [0, 1], num_images_per_prompt=2)  # worked before: a single identity
    torch.testing.assert_close(one, _alone(pipe, tokens, [(0, 0), (0, 1)]), **SAME)
    per_image = _call(pipe, tokens[:2], [0, 1], num_images_per_prompt=2)
    torch.testing.assert_close(per_image, _alone(pipe, tokens, [(0, 0), (1, 1)]), **SAME)
    per_prompt = _call(pipe, tokens[:2], [0, 1, 2, 3], prompt=[PROMPT, PROMPT], num_images_per_prompt=2)
    torch.testing.assert_close(per_prompt, _alone(pipe, tokens, [(0, 0), (0, 1), (1, 2), (1, 3)]), **SAME)


def test_a_count_that_cannot_be_shared_out_is_refused(attached):
    """Before, both ran and every image attended to all the identities at once."""
    pipe, tokens = attached
    with pytest.raises(ValueError, match="tokens of 2 identities for a batch of 1 .prompts x num_images_per_prompt"):
        _call(pipe, tokens[:2], [0])
    with pytest.raises(ValueError, match="3 identities cannot be shared out evenly among 2 images"):
        _call(pipe, tokens, [0, 1], prompt=[PROMPT, PROMPT])


def test_non_square_sides_and_true_cfg_keep_each_identity(attached):
    pipe, tokens = attached
    wide = _call(pipe, tokens[:2], [0, 1], prompt=[PROMPT, PROMPT], side=(32, 48))
    assert wide.shape == (2, 3, 32, 48)
    torch.testing.assert_close(wide, _alone(pipe, tokens, [(0, 0), (1, 1)], side=(32, 48)), **SAME)
    cfg = dict(true_cfg_scale=2.0)
    by_text = _call(pipe, tokens[:2], [0, 1], prompt=[PROMPT, PROMPT], negative_prompt=["blurry", "blurry"], **cfg)
    torch.testing.assert_close(by_text, _alone(pipe, tokens, [(0, 0), (1, 1)], negative_prompt="blurry", **cfg),
                               **SAME)
    negative, pooled = prompt_embeddings(FLOW, "blurry")
    by_embeds = _call(pipe, tokens[:2], [0, 1], prompt=[PROMPT, PROMPT],
                      negative_prompt_embeds=negative.expand(2, -1, -1),
                      negative_pooled_prompt_embeds=pooled.expand(2, -1), **cfg)
    torch.testing.assert_close(by_embeds, by_text, rtol=0, atol=0)
    assert (by_text - _alone(pipe, tokens, [(0, 0), (1, 1)])).abs().max() > 1e-2  # the negative pass does act


def test_one_identitys_tokens_without_a_batch_dimension(attached):
    pipe, tokens = attached
    torch.testing.assert_close(_call(pipe, tokens[0], [0]), _call(pipe, tokens[:1], [0]), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"tokens \[identities, N, D\] or one identity's \[N, D\]; got shape \[5\]"):
        ip_adapter_kwargs(tokens[0, :, 0])


def test_a_controlnet_pipeline_gives_each_image_its_identity(rig):
    parts, adapter, _, tokens = rig
    controlnet = FluxControlNetModel(**{k: v for k, v in FLOW.transformer.items() if k != "num_single_layers"},
                                     num_single_layers=0)
    pipe = FluxControlNetPipeline(scheduler=parts.scheduler, vae=parts.vae, text_encoder=None, tokenizer=None,
                                  text_encoder_2=None, tokenizer_2=None, transformer=parts.transformer,
                                  controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    embeds, pooled = prompt_embeddings(FLOW, PROMPT)
    control = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))

    def call(toks, seeds):
        n = len(seeds)
        return pipe(prompt_embeds=embeds.expand(n, -1, -1), pooled_prompt_embeds=pooled.expand(n, -1),
                    control_image=control, controlnet_conditioning_scale=0.5, height=32, width=32,
                    num_inference_steps=2, output_type="pt",
                    generator=[torch.Generator().manual_seed(s) for s in seeds], **ip_adapter_kwargs(toks)).images

    adapter.attach(pipe)
    try:
        batch = call(tokens[:2], [0, 1])
        alone = torch.cat([call(tokens[:1], [0]), call(tokens[1:2], [1])])
    finally:
        adapter.detach()
    torch.testing.assert_close(batch, alone, **SAME)


def test_flux_sample_gives_each_row_its_identity(rig):
    """omniid.flux.sample (OmniIDGenerator.generate, omniid-eval): one image per row of tokens."""
    parts, adapter, _, tokens = rig
    embeds = prompt_embeddings(FLOW, PROMPT)

    def run(toks, seeds):
        return sample(parts, *embeds, toks, adapter, height=32, width=32, guidance=3.5, steps=2,
                      generator=[torch.Generator().manual_seed(s) for s in seeds])

    torch.testing.assert_close(run(tokens, [0, 1, 2]),
                               torch.cat([run(tokens[i:i + 1], [i]) for i in range(3)]), **SAME)
