"""SFace with its real weights: it tells people apart, and its fast graph embeds like the plain one."""
from __future__ import annotations

import cv2
import numpy as np
import skimage.data

from mfhq.align import arcface_template, similarity_transform, warp
from mfhq.models import create_backend
from mfhq.sample import load_photo


def _aligned(detector, image, size):
    found = detector.detect([image])[0]
    return warp(image, similarity_transform(found.landmarks[0], arcface_template(size)), size)


def test_sface_tells_people_apart(detector):
    embedder = create_backend("embedder", "sface")
    embedder.setup()
    astronaut = np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])
    turned = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), 15, 1.1), (512, 512))
    others = [load_photo(f"t1_face{i}") for i in range(3)]
    crops = np.stack([_aligned(detector, img, 112) for img in [astronaut, turned, *others]])
    vectors = embedder.embed(crops)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    threshold = 0.363  # SFace's published cosine threshold
    assert vectors[0] @ vectors[1] > threshold + 0.2
    sims = vectors[2:] @ vectors[0]
    assert (sims < threshold).all(), sims
    between = vectors[2:] @ vectors[2:].T
    assert (between[~np.eye(3, dtype=bool)] < threshold).all()


def test_sface_fast_graph_embeds_like_the_plain_one(detector, astronaut):
    """The PRelu rewrite is a speed change only: same embeddings as the folded graph as shipped."""
    from mfhq.models.runtime import ort_session
    from mfhq.models.sface import SFACE, load_sface_graph

    embedder = create_backend("embedder", "sface")
    embedder.setup()
    turned = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), 15, 1.1), (512, 512))
    crops = np.stack([_aligned(detector, img, 112) for img in (astronaut, turned)])
    plain = ort_session(load_sface_graph(embedder.paths[SFACE.name], fast=False).SerializeToString(), "cpu")
    fast = embedder._session
    assert "PRelu" not in {n.op_type for n in load_sface_graph(embedder.paths[SFACE.name]).graph.node}
    blob = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
    for one in blob:
        want = plain.run(None, {embedder._input: one[None]})[0]
        got = fast.run(None, {embedder._input: one[None]})[0]
        assert np.allclose(got, want, rtol=1e-4, atol=1e-5), np.abs(got - want).max()
    vectors = embedder.embed(crops)
    assert vectors[0] @ vectors[1] > 0.5
