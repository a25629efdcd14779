"""The flow-matching objective on the tiny preset (real diffusers FLUX + VAE, random weights):
what trains and what stays frozen, overfitting one real batch, the loss as eq. 7 says, and
conditioning on any registered representation."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from omniid.config import get_preset
from omniid.data import build_loader
from omniid.objectives import ObjectiveOutput, build_objective
from omniid.representations import REPRESENTATIONS, register_representation
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)

PRESET = get_preset("tiny", stage="flow")


@pytest.fixture(scope="module")
def batch(sample_manifest):
    m, flow = PRESET.model, PRESET.flow
    loader = build_loader(sample_manifest, m.image_size, 3, 2, batch_size=2, seed=0,
                          target_size=flow.image_size, target_pixels="signed")
    return next(iter(loader))


def _objective(seed=0, **options):
    torch.manual_seed(seed)
    return build_objective("flow", PRESET, **options)


def test_flow_batches_get_their_own_target_pixels(batch):
    assert batch["inputs"].shape[-1] == PRESET.model.image_size
    assert batch["targets"].shape[-1] == PRESET.flow.image_size
    assert batch["targets"].min() >= -1 and batch["targets"].max() <= 1 and batch["targets"].min() < -0.5


def test_the_adapter_is_built_at_the_presets_adapter_scale():
    # Each IP processor multiplies its attention by its own `scale`: flow.adapter_scale must reach
    # them. Every preset says 1.0, the adapter's default, so dropping the option passed.
    preset = dataclasses.replace(PRESET, flow=dataclasses.replace(PRESET.flow, adapter_scale=0.4))
    adapter = build_objective("flow", preset).adapter
    assert adapter.scale == pytest.approx(0.4)
    assert [proc.scale for proc in adapter.processors] == [[pytest.approx(0.4)]] * len(adapter.processors)


def test_gradients_reach_encoder_projection_and_ip_layers_never_flux_or_vae(batch):
    model = _objective()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(2):  # step 0: only to_v_ip moves (it starts at zero); from step 1 on, all
        model.zero_grad()
        out = model(batch, torch.Generator().manual_seed(step))
        assert isinstance(out, ObjectiveOutput) and out.loss.ndim == 0
        out.loss.backward()
        optimizer.step()
    grads = {name: p.grad for name, p in model.named_parameters()}
    clip = model.representation.encoder.clip
    assert clip.conv1.weight.grad.abs().sum() > 0                   # CLIP's first layer
    assert model.representation.encoder.queries.grad.abs().sum() > 0
    for name in ("adapter.projection.ff.net.0.proj.weight", "adapter.processors.0.to_k_ip.0.weight",
                 "adapter.processors.1.to_v_ip.0.weight"):
        assert grads[name].abs().sum() > 0, name
    for part in (model.transformer, model.vae):
        own = [p for n, p in part.named_parameters() if "encoder_hid_proj" not in n and "processor" not in n]
        assert own and all(not p.requires_grad and p.grad is None for p in own)


def test_gradient_checkpointing_on_encoder_and_flux_changes_no_gradient(batch):
    model = _objective()
    with torch.no_grad():  # as after some training: every trained part gets a gradient
        for proc in model.adapter.processors:
            proc.to_v_ip[0].weight.normal_(std=0.1)

    def grads():
        model.zero_grad()
        model(batch, torch.Generator().manual_seed(0)).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.set_grad_checkpointing(True)
    assert model.transformer.gradient_checkpointing
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys() and len(plain) > 50
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


def test_loss_is_the_velocity_error(batch):
    """eq. 7's loss is the mean squared error of the prediction against the objective's target, over
    t in [0, 1); that the target is ε - z and FLUX's input z_t is the next test's to check."""
    model = _objective().eval()
    with torch.no_grad():
        out = model(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.loss, ((out.pred - out.aux["target"]) ** 2).mean())
    assert out.pred.shape == out.aux["target"].shape == (4, (PRESET.flow.image_size // 4) ** 2, 16)
    assert ((0 <= out.aux["t"]) & (out.aux["t"] < 1)).all()


def test_the_transformer_gets_z_t_between_the_latents_and_the_noise_and_learns_noise_minus_latents(batch):
    """eq. 6-7 written out, the draws replayed from the batch's items' own keys in the objective's
    order (latents, t, ε; `omniid.noise`): FLUX is given z_t = (1 - t) z + t ε (t = 0 the face, t = 1 pure noise, as
    FLUX's sampler steps from 1 to 0) and the target is ε - z. The loss against aux["target"]
    alone cannot tell a swapped end or a flipped sign: both come from the code under test."""
    from omniid.flux.latents import encode_latents, pack_latents
    from omniid.noise import Draws
    from omniid.objectives.flow import sample_timesteps

    model = _objective().eval()
    assert len(batch["item_keys"]) == batch["targets"].shape[0]  # a loader's batch: one key per item
    with torch.no_grad():
        out = model(batch, torch.Generator().manual_seed(0))
        g = Draws.of(batch, batch["targets"].shape[1], None)
        latents = encode_latents(model.vae, batch["targets"].flatten(0, 1), g, PRESET.flow.latents).float()
        z = pack_latents(latents)
        t = sample_timesteps(z.shape[0], PRESET.flow, g, "cpu")
        noise = g.randn(z.shape)
        torch.testing.assert_close(out.aux["t"], t)
        torch.testing.assert_close(out.aux["target"], noise - z)
        z_t = (1 - t[:, None, None]) * z + t[:, None, None] * noise
        tokens = model.represent(batch).repeat_interleave(batch["targets"].shape[1], dim=0)
        v = model.velocity(z_t, t, tokens, *latents.shape[-2:])
    torch.testing.assert_close(out.pred, v)


def test_flux_is_given_the_presets_guidance_in_training(batch):
    """FLUX.1-dev embeds a guidance value (`guidance_embeds`): training must pass the preset's, the
    value generation later uses. The test above replays `velocity` itself, so it cannot see it."""
    for guidance in (3.5, 5.0):
        preset = dataclasses.replace(PRESET, flow=dataclasses.replace(PRESET.flow, guidance=guidance))
        torch.manual_seed(0)
        model, seen = build_objective("flow", preset).eval(), []
        assert model.transformer.config.guidance_embeds  # the premise: the tiny FLUX embeds it too
        hook = model.transformer.register_forward_pre_hook(
            lambda module, args, kwargs: seen.append(kwargs["guidance"]), with_kwargs=True)
        with torch.no_grad():
            model(batch, torch.Generator().manual_seed(0))
        hook.remove()
        assert len(seen) == 1 and seen[0].tolist() == [guidance] * 4  # B*R = 2*2 target faces


def test_latents_are_shifted_and_scaled_as_fluxpipeline_undoes_them(batch):
    """Generation goes through diffusers' FluxPipeline, which decodes latents / scaling_factor +
    shift_factor: training must encode (mean - shift) * scale, or the two see other latents."""
    from omniid.flux.latents import encode_latents

    vae = _objective().vae
    assert vae.config.shift_factor and vae.config.scaling_factor != 1  # the premise: FLUX's 0.1159, 0.3611
    images = batch["targets"].flatten(0, 1)
    with torch.no_grad():
        mean = vae.encode(images).latent_dist.mean
        ours = encode_latents(vae, images, latents="mean")
    torch.testing.assert_close(ours / vae.config.scaling_factor + vae.config.shift_factor, mean)


def test_logit_normal_timesteps_follow_their_parameters():
    from dataclasses import replace

    from omniid.objectives.flow import sample_timesteps

    flow = replace(PRESET.flow, timesteps="logit_normal", logit_mean=1.0, logit_std=0.5)
    t = sample_timesteps(20000, flow, torch.Generator().manual_seed(0), "cpu")
    logits = torch.logit(t.double())
    assert ((0 < t) & (t < 1)).all()
    assert abs(logits.mean().item() - 1.0) < 0.02 and abs(logits.std().item() - 0.5) < 0.02
    with pytest.raises(ValueError, match="uniform, logit_normal"):
        sample_timesteps(2, replace(flow, timesteps="cosine"), None, "cpu")


def test_overfitting_one_batch_cuts_the_loss(batch):
    """25 AdamW steps on one batch with fixed noise and t cut the flow loss by over 15%. Only the
    encoder and adapter learn, through a frozen random FLUX, so it plateaus early: on random
    tensors about 1.44 -> 1.12 by step 20, and 1.11 at step 60, at the time of writing."""
    model = _objective()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(25):
        loss = model(batch, torch.Generator().manual_seed(0)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses


class MeanPixels(nn.Module):
    """A stand-in baseline: 4 tokens from each identity's mean input image (no CLIP)."""

    def __init__(self, preset, **_):
        super().__init__()
        self.num_tokens, self.dim = 4, 12
        self.proj = nn.Linear(3, self.num_tokens * self.dim)

    def forward(self, batch):
        pixels = batch["inputs"].mean(dim=(1, 3, 4))                  # [B, 3]
        return self.proj(pixels).view(-1, self.num_tokens, self.dim)


def test_flow_conditions_on_any_registered_representation(batch):
    register_representation("mean-pixels", MeanPixels)
    try:
        model = _objective(representation="mean-pixels")
        assert model.adapter.config["num_tokens"] == 4 and model.adapter.config["token_dim"] == 12
        out = model(batch, torch.Generator().manual_seed(0))
        out.loss.backward()
        assert model.representation.proj.weight.grad is not None
    finally:
        REPRESENTATIONS.pop("mean-pixels")


def test_bench_flow_reports_each_batch_size(capsys):
    """A batch size is a micro-batch's identities; an optimizer step (s_per_step) takes --grad-accum of them."""
    from omniid.bench_flow import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "identities per micro-batch" in " ".join(capsys.readouterr().out.split())
    assert main(["--preset", "tiny", "--batch-sizes", "1,2", "--steps", "1", "--grad-accum", "3"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["identities_per_micro_batch"] for r in records] == [1, 2] and all(r["s_per_step"] > 0 for r in records)
    assert [r["identities_per_optimizer_step"] for r in records] == [3, 6] and {r["grad_accum"] for r in records} == {3}
    targets = get_preset("tiny", stage="flow").data.num_targets
    for r in records:
        assert r["identities_per_s"] == pytest.approx(r["identities_per_optimizer_step"] / r["s_per_step"])
        assert r["targets_per_micro_batch"] == r["identities_per_micro_batch"] * targets


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_flux_on_cuda_trains_the_encoder_and_adapter(batch):
    """FLUX and the VAE in bf16 (frozen), encoder and adapter in fp32 under bf16 autocast."""
    cuda = get_preset("tiny", stage="flow", **{"flow.dtype": "bfloat16"})
    torch.manual_seed(0)
    model = build_objective("flow", cuda, device="cuda")
    model.set_grad_checkpointing(True)
    assert model.transformer.dtype == torch.bfloat16 and model.adapter.projection.norm.weight.dtype == torch.float32
    on_cuda = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in batch.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(on_cuda, torch.Generator(device="cuda").manual_seed(0)).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.adapter.processors[0].to_v_ip[0].weight.grad.abs().sum() > 0


def test_each_item_draws_its_own_posterior_sample_t_and_noise_in_any_batch(batch):
    """An item's draws come from its own key (`omniid.noise`): the second item's posterior sample,
    t and noise are the same read beside the first or alone (a micro-batch or another process),
    and the two items' differ. A generator per batch gave the lone item the first item's draws."""
    from omniid.flux.latents import encode_latents
    from omniid.noise import Draws

    vae, r = _objective().vae, batch["targets"].shape[1]
    keys, targets = batch["item_keys"], batch["targets"]

    def drawn(items: slice):
        draws = Draws(keys=keys[items], rows=r)
        with torch.no_grad():
            latents = encode_latents(vae, targets[items].flatten(0, 1), draws, "sample")
        return latents, draws.rand((latents.shape[0],)), draws.randn((latents.shape[0], 4))

    together, alone = drawn(slice(0, 2)), drawn(slice(1, 2))
    for both, second in zip(together, alone):
        torch.testing.assert_close(both[r:], second)
        assert not torch.equal(both[:r], both[r:])
    with pytest.raises(ValueError, match="3 rows drawn for 2 items of 2 rows each"):
        Draws(keys=keys, rows=r).randn((3, 4))
