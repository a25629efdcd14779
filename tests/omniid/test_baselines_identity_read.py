"""The `arcface` baselines' frozen identity model reads each input's aligned crop at its own 112 px
(a 448 px JPEG crop decoded at 1/4 scale), as the metric reads faces, never the encoder's 32 px
input scaled up: in training's batches (their loaders ask for the read), at inference (the same
face from the same crop file) and nowhere else (other representations' batches are unchanged)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from omniid.config import get_preset
from omniid.crop_reader import CropReader
from omniid.data import build_loader
from omniid.objectives.flow import loader_options as flow_loader_options, stage_loader_options
from omniid.preprocess import IDENTITY_SIDE
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)

TINY = get_preset("tiny", stage="flow")


@pytest.fixture(scope="module")
def identity():
    from omniid.baselines import IdentityEmbedding

    return IdentityEmbedding("sample")  # SFace, offline: the identity model of the tiny presets


def batch_for(representation, manifest: Path, num_inputs: int, **extra) -> dict:
    """The first batch of the flow stage's loader, with what the representation asks of it (extra:
    as if it asked that too), joined by the trainer's own join of the two."""
    options = stage_loader_options(TINY.flow, {**getattr(representation, "loader_options", {}), **extra})
    loader = build_loader(manifest, TINY.model.image_size, num_inputs, 1, 2, seed=3, clamp_batch=True,
                          num_inputs_min=1, **options)
    return next(iter(loader))


def own_read(identity, crop: str) -> np.ndarray:
    """The identity model's embedding of the crop file read at 112 px by the data path's reader."""
    face = CropReader(IDENTITY_SIDE).image(Path(crop))
    return np.asarray(identity.faces.embed(face[None]), np.float32)[0]


def test_each_inputs_embedding_is_that_of_its_crops_own_112px_read(identity, sample_manifest):
    from omniid.baselines import ArcFaceRepresentation

    rep = ArcFaceRepresentation(identity, TINY.baseline)
    one = batch_for(rep, sample_manifest, 1)  # one input each: the pooled embedding is the input's own
    got = identity.pooled(one).numpy()
    for b, paths in enumerate(one["input_paths"]):
        np.testing.assert_allclose(got[b], own_read(identity, paths[0]), atol=1e-5)
    several = batch_for(rep, sample_manifest, 3)
    got = identity.pooled(several)
    for b, paths in enumerate(several["input_paths"]):
        mean = torch.from_numpy(np.stack([own_read(identity, p) for p in paths])).mean(0)
        torch.testing.assert_close(got[b], F.normalize(mean, dim=0), atol=1e-5, rtol=0)


def test_inference_reads_the_same_face_from_the_same_crops(identity, sample_manifest):
    """`OmniIDGenerator.tokens`' preparation of a manifest's crops against the loader's batch."""
    from omniid.baselines import ArcFaceRepresentation
    from omniid.face_inputs import InputAligner, identity_batch

    torch.manual_seed(0)
    rep = ArcFaceRepresentation(identity, TINY.baseline).eval()
    trained = batch_for(rep, sample_manifest, 3)
    paths = trained["input_paths"][0]
    for aligner in (None, InputAligner("sample")):  # given as crops, or found to be aligned crops
        given, _ = identity_batch([paths], TINY.model.image_size, aligner, IDENTITY_SIDE)
        k = len(paths)
        assert torch.equal(given["identity_inputs"][0], trained["identity_inputs"][0, :k])
        assert torch.equal(given["inputs"][0], trained["inputs"][0, :k])
        with torch.no_grad():
            torch.testing.assert_close(rep(given)[0], rep({k2: v[:1] for k2, v in trained.items()
                                                           if torch.is_tensor(v)})[0])


def test_the_read_adds_to_a_batch_and_changes_nothing_else(sample_manifest):
    plain = batch_for(None, sample_manifest, 3)  # what the other representations' loaders give
    read = batch_for(None, sample_manifest, 3, identity_side=IDENTITY_SIDE)
    assert "identity_inputs" not in plain
    faces = read.pop("identity_inputs")
    assert faces.dtype == torch.uint8 and faces.shape == (*read["inputs"].shape[:2], IDENTITY_SIDE, IDENTITY_SIDE, 3)
    assert not faces[~read["input_valid"]].any()  # padding stays zeros, as the inputs' does
    assert plain.keys() == read.keys()
    for key, value in plain.items():  # every other part of the batch bit for bit the same
        assert torch.equal(value, read[key]) if torch.is_tensor(value) else value == read[key], key


@pytest.mark.parametrize("representation, side", [("arcface", IDENTITY_SIDE), ("arcface+clip", IDENTITY_SIDE),
                                                  ("clip", None), ("omniid", None)])
def test_the_flow_stage_asks_its_loaders_for_the_read_only_for_the_arcface_baselines(representation, side):
    from omniid.objectives import build_objective

    objective = build_objective("flow", TINY, representation=representation, pretrained_clip=False)
    assert objective.loader_options.get("identity_side") == side
    assert {k: v for k, v in objective.loader_options.items() if k != "identity_side"} == flow_loader_options(
        TINY.flow)
