"""Few-to-many data from a manifest: sampling sizes, determinism, resume, ranks, errors."""
from __future__ import annotations

import json
import shutil
from itertools import islice

import pyarrow.parquet as pq
import pytest
import torch

from omniid.data import FewToManyDataset, FewToManySampler, ManifestError, build_loader, load_manifest, resolve_root
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)

SIZE = 32


@pytest.mark.parametrize("ablation", [(3, 8), (3, 1), (3, 5), (8, 8)])
def test_items_have_inputs_targets_and_binary_masks(sample_manifest, ablation):
    inputs, targets = ablation
    dataset = FewToManyDataset(load_manifest(sample_manifest), SIZE, inputs, targets)
    item = dataset[(1, 7)]
    assert item["inputs"].shape == (inputs, 3, SIZE, SIZE)
    assert item["targets"].shape == (targets, 3, SIZE, SIZE)
    assert item["masks"].shape == (targets, 1, SIZE, SIZE)
    assert set(item["masks"].unique().tolist()) == {0.0, 1.0}


def test_mixed_m_batches_carry_a_padding_mask(sample_manifest):
    loader = build_loader(sample_manifest, SIZE, 5, 2, batch_size=4, num_inputs_min=1, seed=3)
    counts = set()
    for batch in islice(loader, 4):
        valid = batch["input_valid"]
        assert valid.shape[0] == 4 and valid.shape[1] == valid.sum(1).max() <= 5  # padded to the batch's largest M
        assert valid[:, 0].all()
        assert (batch["inputs"][~valid] == 0).all()
        counts |= set(valid.sum(1).tolist())
    assert len(counts) > 1


def test_batches_do_not_depend_on_workers(sample_manifest):
    plain = list(islice(build_loader(sample_manifest, SIZE, 3, 2, batch_size=2, workers=0, seed=1), 3))
    forked = list(islice(build_loader(sample_manifest, SIZE, 3, 2, batch_size=2, workers=2, seed=1), 3))
    for a, b in zip(plain, forked):
        assert a["identity"] == b["identity"]
        assert torch.equal(a["inputs"], b["inputs"]) and torch.equal(a["masks"], b["masks"])


def test_sampler_resumes_the_same_stream_and_splits_ranks():
    full = list(islice(FewToManySampler(10, 2, seed=4), 12))
    assert list(islice(FewToManySampler(10, 2, seed=4, start_batch=7), 5)) == full[7:12]
    for g in range(6):  # one global batch: two ranks, disjoint identities and draws
        r0 = next(islice(FewToManySampler(10, 2, seed=4, rank=0, world=2), g, None))
        r1 = next(islice(FewToManySampler(10, 2, seed=4, rank=1, world=2), g, None))
        assert not {i for i, _ in r0} & {i for i, _ in r1}
        assert not {d for _, d in r0} & {d for _, d in r1}
    epoch = [i for batch in islice(FewToManySampler(10, 2, seed=4), 5) for i, _ in batch]
    assert sorted(epoch) == list(range(10))  # an epoch visits each identity once


def test_relative_paths_resolve_through_sidecar_or_manifest_folder(sample_manifest, sample_run, tmp_path):
    assert resolve_root(sample_manifest) == sample_run
    local = tmp_path / "m.parquet"
    shutil.copy(sample_manifest, local)
    assert resolve_root(local) == tmp_path
    with pytest.raises(ManifestError, match="missing"):
        load_manifest(local)  # crops are not beside this copy
    (tmp_path / "m.json").write_text(json.dumps({"run_dir": str(sample_run)}))
    assert len(load_manifest(local)) == 4


def test_absolute_paths_are_used_as_they_are(sample_manifest, sample_run, tmp_path):
    table = pq.read_table(sample_manifest)
    for column in ("crop_path", "mask_path"):
        absolute = [str(sample_run / p) for p in table[column].to_pylist()]
        table = table.set_column(table.schema.get_field_index(column), column, [absolute])
    pq.write_table(table, tmp_path / "abs.parquet")
    identities = load_manifest(tmp_path / "abs.parquet")
    assert all(c.is_absolute() and c.is_file() for faces in identities.values() for c, _ in faces)


def test_missing_columns_are_named(sample_manifest, tmp_path):
    table = pq.read_table(sample_manifest).drop(["mask_path", "identity_id"])
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(ManifestError, match="identity_id, mask_path"):
        load_manifest(tmp_path / "bad.parquet")


def test_missing_files_are_named(sample_manifest, sample_run, tmp_path):
    table = pq.read_table(sample_manifest)
    crops = table["crop_path"].to_pylist()
    crops[0] = "crops/nowhere.jpg"
    table = table.set_column(table.schema.get_field_index("crop_path"), "crop_path", [crops])
    pq.write_table(table, tmp_path / "t.parquet")
    (tmp_path / "t.json").write_text(json.dumps({"root": str(sample_run)}))
    with pytest.raises(ManifestError, match=r"(?s)1 file.*crops/nowhere.jpg"):
        load_manifest(tmp_path / "t.parquet")
