"""The Omni-ID encoder on the tiny preset: shapes, key padding, order independence, the
encode/from_pretrained API and the paper preset's missing-weights error."""
from __future__ import annotations

import pytest
import torch

from omniid.clip_tower import ClipWeightsMissing, resolve_clip_weights
from omniid.config import get_preset
from omniid.encoder import OmniIDEncoder
from omniid.preprocess import image_to_tensor
from omniid_fixtures import kept_faces, one_torch_thread  # noqa: F401  (pytest fixtures)

TINY = get_preset("tiny").model


@pytest.fixture(scope="module")
def encoder() -> OmniIDEncoder:
    torch.manual_seed(0)
    return OmniIDEncoder(TINY).eval()


def images(b: int, m: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, m, 3, TINY.image_size, TINY.image_size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("m", [1, 3, 5])
def test_output_shape_for_any_number_of_inputs(encoder, m):
    with torch.no_grad():
        out = encoder.forward_encoder(images(2, m))
    assert out.shape == (2, TINY.num_queries, TINY.width)
    assert torch.isfinite(out).all()


def test_paper_preset_output_is_256_by_1280():
    paper = get_preset("paper").model
    assert (paper.num_queries, paper.width, paper.cross_blocks, paper.self_blocks) == (256, 1280, 2, 2)


def test_mixed_m_batch_equals_each_identity_alone(encoder):
    x = images(2, 5)
    valid = torch.tensor([[True] * 5, [True, True, False, False, False]])
    x[1, 2:] = 1e3  # padding content must be invisible
    with torch.no_grad():
        batched = encoder.forward_encoder(x, valid)
        alone = encoder.forward_encoder(x[1:, :2])
        full = encoder.forward_encoder(x[:1])
    torch.testing.assert_close(batched[1], alone[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(batched[0], full[0], rtol=1e-4, atol=1e-5)


def test_representation_does_not_depend_on_input_order(encoder):
    x = images(1, 4)
    with torch.no_grad():
        out = encoder.forward_encoder(x)
        permuted = encoder.forward_encoder(x[:, [2, 0, 3, 1]])
        other = encoder.forward_encoder(torch.cat([x[:, :3], images(1, 1, seed=5)], dim=1))
    torch.testing.assert_close(permuted, out, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(other, out, atol=1e-3)  # the inputs do matter


def test_every_layer_is_trainable(encoder):
    assert all(p.requires_grad for p in encoder.parameters())
    assert any(name.startswith("clip.transformer") for name, _ in encoder.named_parameters())


def test_encode_uses_training_preprocessing_and_survives_save_load(encoder, kept_faces, sample_run, tmp_path):
    paths = [sample_run / p for p in kept_faces["crop_path"].to_pylist()[:3]]
    latent = encoder.encode(paths)
    assert latent.shape == (TINY.num_queries, TINY.width)
    batch = torch.stack([image_to_tensor(p, TINY.image_size) for p in paths])[None]
    with torch.no_grad():
        torch.testing.assert_close(latent, encoder.forward_encoder(batch)[0])
    encoder.save_pretrained(tmp_path / "enc")
    loaded = OmniIDEncoder.from_pretrained(tmp_path / "enc")
    torch.testing.assert_close(loaded.encode(paths), latent)


def test_from_pretrained_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder.safetensors"):
        (tmp_path / "config.json").write_text("{}")
        OmniIDEncoder.from_pretrained(tmp_path)


def test_paper_preset_without_clip_weights_says_how_to_provide_them(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("OMNIID_CLIP_WEIGHTS", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    paper = get_preset("paper").model
    with pytest.raises(ClipWeightsMissing) as error:
        resolve_clip_weights(paper)
    message = str(error.value)
    assert "--clip-weights" in message and "laion2b_s32b_b79k" in message and "OMNIID_CLIP_WEIGHTS" in message
    with pytest.raises(ClipWeightsMissing, match="not found"):
        resolve_clip_weights(paper, tmp_path / "absent.bin")


def test_inputs_are_normalised_with_the_clip_towers_own_mean_and_std(encoder):
    # open_clip records on the tower the mean and std its weights were trained with; our
    # preprocessing folds its own copy in. ImageNet's (0.485, ...) there, or BGR channels,
    # passed every other test: a random tower takes any input.
    import numpy as np
    import skimage.data
    from PIL import Image

    side = TINY.image_size
    rgb = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((side, side), Image.Resampling.BICUBIC))
    mean, std = (torch.tensor(v, dtype=torch.float32).view(3, 1, 1)
                 for v in (encoder.clip.image_mean, encoder.clip.image_std))
    want = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - mean) / std
    torch.testing.assert_close(image_to_tensor(rgb, side), want, rtol=1e-5, atol=1e-5)


def _blocks_seen(encoder: OmniIDEncoder, m: int) -> list[tuple[bool, int | None]]:
    """Each attention block the queries pass through, in order: (cross-attention?, its keys' length)."""
    seen = []
    blocks = [*encoder.blocks.cross_blocks, *encoder.blocks.self_blocks]
    hooks = [b.register_forward_hook(lambda block, args, out: seen.append(
        (block.cross, args[1].shape[1] if len(args) > 1 else None))) for b in blocks]
    try:
        with torch.no_grad():
            encoder.forward_encoder(images(1, m))
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_the_queries_gather_every_images_tokens_first_then_attend_to_each_other(encoder):
    """Paper §3.1 (docs/train.md): the L queries take all M images' tokens as keys in
    `cross_blocks` cross-attention blocks, and only then mix among themselves in `self_blocks`
    self-attention blocks. Self-attention first would still make an [L, C] output of the right
    shape, order-independent, that depends on the images."""
    (_, one), = {(cross, keys) for cross, keys in _blocks_seen(encoder, 1) if cross}
    seen = _blocks_seen(encoder, 3)
    assert seen == [(True, 3 * one)] * TINY.cross_blocks + [(False, None)] * TINY.self_blocks, seen
