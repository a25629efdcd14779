"""A few-to-many item draws only from its own identity's faces, whatever identities the dataset
leaves out: the flow stage drops an identity with a single face (no target apart from its input),
and every later identity must still read its own crops under its own name. The identity name
labels the item (the engine's contrastive batches and the logs), so inputs of one person under
another's name would teach the encoder that two people are one."""
from __future__ import annotations

import pytest

from omniid.data import load_manifest
from omniid.draws import FewToManyDataset
from omniid_fixtures import kept_faces, sample_manifest  # noqa: F401  (pytest fixtures)


def _with_a_single_face_first(manifest) -> dict:
    """The sample's identities (8 faces each at most), after one that has a single face: the
    first in the dataset's order, so that leaving it out moves every index after it."""
    identities = {name: faces[:8] for name, faces in load_manifest(manifest).items()}
    loner_name, loner_faces = next(iter(identities.items()))
    return {"a-single-face": loner_faces[:1], **{n: f for n, f in identities.items() if n != loner_name}}


@pytest.mark.parametrize("disjoint, m, r", [(True, 3, 4), (False, 3, 8), (False, 3, 1)])
def test_an_items_inputs_and_targets_are_its_identitys_faces(sample_manifest, disjoint, m, r):
    identities = _with_a_single_face_first(sample_manifest)
    dataset = FewToManyDataset(identities, 32, m, r, seed=2, disjoint=disjoint)
    # flow leaves out the single face (it could never have a target apart from its input); MTD keeps it
    assert dataset.names == [n for n in identities if n != "a-single-face" or not disjoint]
    for index, name in enumerate(dataset.names):
        own = {str(crop) for crop, _ in identities[name]}
        for draw in range(4):
            item = dataset[(index, draw)]
            assert item["identity"] == name
            assert set(item["input_paths"]) <= own, (name, item["input_paths"])
            assert set(item["target_paths"]) <= own, (name, item["target_paths"])
            assert len(item["target_paths"]) == item["targets"].shape[0] == r
            assert len(item["input_paths"]) == item["inputs"].shape[0] == min(m, len(own) - disjoint)
