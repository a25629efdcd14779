"""TOPIQ-NR-face (the paper's quality) with its real architecture and random weights: a batch of
aligned crops scored, and a file without the published hash prefix refused."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mfhq.models import create_backend
from mfhq.models.topiq_iqa import TOPIQ_FACE, TopiqFaceQuality, build_cfanet


class RandomTopiq(TopiqFaceQuality):  # the real backend; only the published-name hash check is off
    weight_files = (dataclasses.replace(TOPIQ_FACE, sha256_prefix=None),)


def _random_topiq(folder, batch_size):
    torch.manual_seed(0)
    torch.save({"params": build_cfanet(None).state_dict()}, folder / TOPIQ_FACE.name)
    quality = RandomTopiq(models_dir=folder, batch_size=batch_size)
    quality.setup()
    return quality


def test_topiq_face_scores_a_batch_of_aligned_crops(tmp_path):
    quality = _random_topiq(tmp_path, 2)
    assert not hasattr(quality._net, "face_helper")  # no RetinaFace, no batch-1 alignment
    assert quality._net.test_img_size == 512  # as pyiqa's metric; below, 224 as given keeps the test quick
    quality._net.test_img_size = None
    rng = np.random.default_rng(3)
    crops = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    scores = quality.score(crops)
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()
    quality.batch_size = 1
    np.testing.assert_allclose(quality.score(crops), scores, atol=1e-4)


def test_topiq_file_with_the_wrong_hash_prefix_is_refused(tmp_path):
    from mfhq.models.weights import WeightsCorrupt

    (tmp_path / TOPIQ_FACE.name).write_bytes(b"not the checkpoint")
    with pytest.raises(WeightsCorrupt, match="0a8b8e4f"):
        create_backend("quality", "topiq-nr-face", models_dir=tmp_path).setup()


def test_topiq_score_is_the_networks_mos_unturned(tmp_path):
    # TOPIQ's MOS is higher-is-better, as our quality is: it passes through as it is (clipped),
    # never as 1 - MOS as BRISQUE's badness score is turned. With random weights any direction
    # gives scores in [0, 1], so the head is set to say one MOS whatever the crop.
    quality = _random_topiq(tmp_path, 2)
    quality._net.test_img_size = None
    crops = np.random.default_rng(5).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    head = quality._net.score_linear[-1]
    for mos in (0.8, 0.3):
        with torch.no_grad():
            head.weight.zero_()
            head.bias.fill_(mos)
        np.testing.assert_allclose(quality.score(crops), [mos, mos], atol=1e-5)
