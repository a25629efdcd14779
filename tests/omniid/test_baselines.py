"""The baseline representations (clip, arcface, arcface+clip) on the tiny preset: the
representation contract, what trains and what stays frozen, and save/load of the trained part."""
from __future__ import annotations

import pytest
import torch

from omniid.baselines import BASELINES, register_baselines
from omniid.config import get_preset
from omniid_fixtures import one_torch_thread  # noqa: F401  (pytest fixture)

TINY = get_preset("tiny")
TOKENS = {"clip": 1 + (32 // 8) ** 2, "arcface": 4, "arcface+clip": 1 + (32 // 8) ** 2 + 4}


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


@pytest.mark.parametrize("name", list(BASELINES))
def test_only_the_projection_trains(built, name):
    rep = built[name]
    rep.zero_grad()
    out = rep(batch())
    trainable = {n for n, p in rep.named_parameters() if p.requires_grad}
    assert out.requires_grad == bool(trainable)
    if out.requires_grad:
        out.square().sum().backward()
    assert all(n.startswith("arcface.projection.") for n in trainable)
    assert bool(trainable) == ("arcface" in name)
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


def test_save_and_load_the_trained_projection_and_a_random_tower(built, tmp_path):
    rep = built["arcface+clip"]
    with torch.no_grad():
        for p in rep.arcface.projection.parameters():
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
