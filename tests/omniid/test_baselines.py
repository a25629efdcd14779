"""The baseline representations (clip, arcface, arcface+clip) on the tiny preset: the
representation contract, what trains and what stays frozen, and save/load of the trained part."""
from __future__ import annotations

import pytest
import torch

from omniid.baselines import BASELINES, register_baselines
from omniid.config import get_preset
from omniid_fixtures import one_torch_thread  # noqa: F401  (pytest fixture)

TINY = get_preset("tiny")
# clip: CLS + (32 / 8)^2 patches; arcface and arcface+clip: the preset's baseline tokens (its L)
TOKENS = {"clip": 1 + (32 // 8) ** 2, "arcface": 16, "arcface+clip": 16}


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    return {name: build(TINY) for name, build in BASELINES.items()}


def batch(seed: int = 0, valid=((True, True, True), (True, False, False))) -> dict:
    g = torch.Generator().manual_seed(seed)
    valid = torch.tensor(valid)
    return {"inputs": torch.randn(len(valid), valid.shape[1], 3, 32, 32, generator=g), "input_valid": valid}


@pytest.mark.parametrize("name", list(BASELINES))
def test_contract_and_shapes(built, name):
    rep = built[name]
    out = rep(batch())
    assert (rep.num_tokens, rep.dim) == (TOKENS[name], 64)
    assert out.shape == (2, rep.num_tokens, rep.dim)
    assert torch.isfinite(out).all()


TRAINED = {"clip": (), "arcface": ("arcface.",), "arcface+clip": ("arcface.", "clip_proj.", "blocks.")}


@pytest.mark.parametrize("name", list(BASELINES))
def test_only_the_baselines_own_part_trains(built, name):
    rep = built[name]
    rep.zero_grad()
    out = rep(batch())
    trainable = {n for n, p in rep.named_parameters() if p.requires_grad}
    assert out.requires_grad == bool(trainable)
    if out.requires_grad:
        out.square().sum().backward()
    assert {n.split(".")[0] + "." for n in trainable} == set(TRAINED[name])
    assert not any(n.startswith("tokens.") for n in trainable)  # the CLIP tower stays frozen
    assert all(p.grad is not None for n, p in rep.named_parameters() if n in trainable)
    assert all(p.grad is None for n, p in rep.named_parameters() if n not in trainable)


@pytest.mark.parametrize("name", list(BASELINES))
def test_padding_and_order_do_not_matter_but_the_images_do(built, name):
    rep = built[name]
    b = batch(1)
    with torch.no_grad():
        out = rep(b)
        shuffled = dict(b, inputs=b["inputs"][:, [2, 0, 1]], input_valid=b["input_valid"][:, [2, 0, 1]])
        torch.testing.assert_close(rep(shuffled)[0], out[0], rtol=1e-4, atol=1e-4)
        padded = dict(b, inputs=b["inputs"].clone())
        padded["inputs"][1, 1:] = 5.0  # padding content is invisible
        torch.testing.assert_close(rep(padded)[1], out[1], rtol=1e-4, atol=1e-4)
        other = rep(batch(2))
    assert not torch.allclose(other[0], out[0], atol=1e-4)



@pytest.mark.parametrize("name", list(BASELINES))
def test_an_identity_padded_to_the_batchs_m_is_represented_as_alone(built, name):
    """One input padded to three (a batch with num_inputs_min < num_inputs, eval's k = 1 beside
    k = 3) gives the representation of that input alone: the mean is over the valid inputs, not
    over the batch's M (the clip baseline's tokens would shrink to a third)."""
    rep = built[name]
    b = batch(3)
    with torch.no_grad():
        padded = rep(b)[1]
        alone = rep({"inputs": b["inputs"][1:, :1], "input_valid": torch.tensor([[True]])})[0]
    torch.testing.assert_close(padded, alone, rtol=1e-4, atol=1e-4)

def test_save_and_load_the_trained_projection_and_a_random_tower(built, tmp_path):
    rep = built["arcface+clip"]
    with torch.no_grad():
        for p in rep.parameters():
            if p.requires_grad:
                p.add_(0.5)
    rep.save_pretrained(tmp_path)
    torch.manual_seed(1)  # another random tiny tower: the checkpoint must carry the trained one's
    fresh = BASELINES["arcface+clip"](TINY)
    fresh.load_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(fresh(batch()), rep(batch()))


def test_registered_in_the_representation_registry():
    representations = pytest.importorskip("omniid.representations")
    register_baselines(representations.register_representation)
    for name in BASELINES:
        rep = representations.build_representation(name, TINY)
        assert rep(batch()).shape == (2, TOKENS[name], 64)


PAPER = get_preset("paper", stage="flow")


@pytest.fixture(scope="module")
def identity():
    from omniid.baselines import IdentityEmbedding

    return IdentityEmbedding("sample")  # SFace, offline: the paper profile's ArcFace is not on this machine


def test_arcface_is_the_embedding_projected_to_256_tokens(identity):
    from omniid.baselines import ArcFaceRepresentation

    assert (PAPER.baseline.tokens, PAPER.baseline.width) == (256, 512)
    rep = ArcFaceRepresentation(identity, PAPER.baseline)
    with torch.no_grad():
        out = rep(batch())
    assert (rep.num_tokens, rep.dim) == (256, 512) and out.shape == (2, 256, 512)


def test_arcface_clip_is_arcface_queries_attending_to_clip_tokens(identity):
    """FaceID-Plus style at the paper's baseline sizes (tiny CLIP tower): N is the number of
    ArcFace-derived queries, not CLIP's tokens plus ArcFace's, and the output moves with either input."""
    from omniid.baselines import ArcFaceClipRepresentation
    from omniid.blocks import BlockStack

    torch.manual_seed(0)
    rep = ArcFaceClipRepresentation(TINY.model, identity, PAPER.baseline).eval()
    assert isinstance(rep.blocks, BlockStack) and len(rep.blocks.cross_blocks) == TINY.model.cross_blocks
    b = batch()
    with torch.no_grad():
        out = rep(b)
        assert (rep.num_tokens, rep.dim) == (256, 512) and out.shape == (2, 256, 512)
        embedding, clip, valid = identity.pooled(b), rep.tokens.per_image(b), b["input_valid"]
        torch.testing.assert_close(rep.attend(embedding, clip, valid), out)
        other_clip = rep.attend(embedding, clip.flip(0), valid)               # the same ArcFace queries
        other_face = rep.attend(embedding.flip(0), clip, valid)               # the same CLIP keys/values
    assert not torch.allclose(other_clip[0], out[0], atol=1e-3)
    assert not torch.allclose(other_face[0], out[0], atol=1e-3)


@pytest.mark.parametrize("name", ["clip", "arcface+clip"])
@pytest.mark.parametrize("resumed", [False, True], ids=["fresh", "resumed"])
def test_paper_asks_for_the_same_clip_weights_fresh_or_resumed(name, resumed, tmp_path, monkeypatch):
    """omniid-train builds the objective with pretrained_clip=False when it resumes (Omni-ID's
    trained CLIP is in its checkpoint); a baseline's frozen CLIP never is, so the resumed run
    asks for the same weights file as the fresh one and says which is missing."""
    from omniid.errors import ClipWeightsMissing
    from omniid.representations import build_representation

    monkeypatch.delenv("OMNIID_CLIP_WEIGHTS", raising=False)
    missing = tmp_path / "open_clip_model.safetensors"
    with pytest.raises(ClipWeightsMissing, match=str(missing)):
        build_representation(name, PAPER, clip_weights=str(missing), pretrained_clip=not resumed)


def test_a_pretrained_frozen_tower_comes_from_its_file_and_stays_out_of_the_checkpoint(tmp_path):
    """The tiny tower given pretrained weights, as the paper's is: fresh and resumed builds hold
    the file's weights, and a checkpoint holds none of them."""
    import dataclasses

    import open_clip
    from safetensors.torch import save_file

    from omniid.representations import build_representation

    weights = tmp_path / "tiny-clip.safetensors"
    torch.manual_seed(3)
    save_file({k: v.contiguous() for k, v in open_clip.create_model("OmniID-Tiny-ViT").state_dict().items()},
              str(weights))
    preset = dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, clip_pretrained="a-file"))
    expected = open_clip.create_model("OmniID-Tiny-ViT", pretrained=str(weights)).visual.conv1.weight
    for resumed in (False, True):
        torch.manual_seed(4)
        rep = build_representation("clip", preset, clip_weights=str(weights), pretrained_clip=not resumed)
        torch.testing.assert_close(rep.tokens.clip.conv1.weight, expected)
        rep.save_pretrained(tmp_path / "step")
        assert not (tmp_path / "step").exists()  # nothing trained, nothing random: nothing to save


def test_clip_gives_the_towers_last_layer_tokens_after_its_final_layernorm_cls_first(built):
    """docs/train.md: `clip` is the tower's 1 + (S/p)^2 tokens after its final LayerNorm, CLS first,
    unprojected. open_clip's own forward is the reference: with output_tokens it returns the CLS
    token (`pool_type` tok; `proj` is None here) and the patch tokens, both after `ln_post`."""
    import copy

    rep, b = built["clip"], batch(3)
    tower = copy.deepcopy(rep.tokens.clip)
    tower.output_tokens = True
    assert tower.pool_type == "tok" and tower.proj is None  # the premise of the reference
    with torch.no_grad():
        ours = rep.tokens.per_image(b)[b["input_valid"]]
        cls, patches = tower(b["inputs"][b["input_valid"]])
    torch.testing.assert_close(ours, torch.cat([cls[:, None], patches], dim=1))
