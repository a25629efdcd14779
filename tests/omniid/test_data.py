"""Few-to-many data from a manifest: sampling sizes, determinism, resume, ranks, errors."""
from __future__ import annotations

import json
import logging
import shutil
from itertools import islice

import pyarrow.parquet as pq
import pytest
import torch

from omniid.data import (BadCropsError, FaceDataset, FewToManyDataset, FewToManySampler, ManifestError, build_loader,
                         load_faces, load_manifest)
from mfhq.manifest import read_manifest
from omniid_fixtures import (kept_faces, one_torch_thread, sample_manifest,  # noqa: F401  (pytest fixtures)
                             write_contract_folder)

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
        # Each identity's own inputs and no more: a mask of all slots passed the checks above
        # (every batch has some M), and the encoder then attends to the zero padding.
        assert valid.sum(1).tolist() == [len(paths) for paths in batch["input_paths"]]
        assert valid.tolist() == [[k < len(paths) for k in range(valid.shape[1])] for paths in batch["input_paths"]]
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


def test_each_epoch_leaves_out_the_identities_no_whole_batch_holds(sample_manifest, caplog):
    """10 identities, batches of 3 x 2 processes: 1 global batch an epoch, 4 identities left out of
    each epoch (a different 4), and the training loader says so once at the start."""
    sampler = FewToManySampler(10, 3, seed=4, world=2)
    assert (len(sampler), sampler.left_out) == (1, 4)
    epochs = [{i for rank in range(2) for i, _ in next(islice(FewToManySampler(10, 3, seed=4, rank=rank, world=2),
                                                               e, None))} for e in range(3)]
    assert all(len(epoch) == 6 for epoch in epochs) and len(set(map(frozenset, epochs))) > 1
    with caplog.at_level(logging.INFO, logger="omniid.data"):
        loader = build_loader(sample_manifest, SIZE, 3, 2, batch_size=3)
    n = len(loader.dataset)
    assert n % 3, n  # the sample manifest's identities do not fill whole batches of 3
    left = [r.getMessage() for r in caplog.records if "leaves out" in r.getMessage()]
    assert left == [f"train: each epoch leaves out {n % 3} of {n} identities, a different {n % 3} each epoch "
                    f"({n // 3} global batch{'' if n // 3 == 1 else 'es'} of 3 x 1, like drop_last)"]


def _copy_run(src, dest):
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.parquet", "done"))
    return dest


def test_moved_manifest_folder_still_resolves(sample_manifest, sample_run, tmp_path):
    # the manifest folder alone, elsewhere: the run's recorded absolute folder is used
    alone = tmp_path / "elsewhere" / "m"
    shutil.copytree(sample_manifest.parent, alone)
    faces = load_faces(alone / "train.parquet")
    assert faces[0].crop.is_file() and str(faces[0].crop).startswith(str(sample_run))
    # runs and manifests moved together (same relative layout): the relative folder wins
    layout = tmp_path / "moved"
    rel = json.loads((sample_manifest.parent / "manifest.json").read_text())["runs"][0]["run_dir_relative"]
    _copy_run(sample_run, (layout / "m" / rel).resolve())
    shutil.copytree(sample_manifest.parent, layout / "m", dirs_exist_ok=True)
    faces = load_faces(layout / "m")  # a folder reads its train split
    assert all(str(f.crop).startswith(str(layout)) and f.crop.is_file() for f in faces)
    # a run moved elsewhere: named by the user, or a clear error naming what was tried
    other = _copy_run(sample_run, tmp_path / "other_place")
    sidecar = json.loads((alone / "manifest.json").read_text())
    sidecar["runs"][0]["run_dir"] = str(tmp_path / "gone")
    (alone / "manifest.json").write_text(json.dumps(sidecar))
    with pytest.raises(ManifestError, match=r"run 'sample' is not found \(tried .*gone"):
        load_faces(alone / "train.parquet")
    assert len(load_manifest(alone / "train.parquet", roots={"sample": other})) == 4



def test_the_faces_are_in_identity_and_crop_path_order_whatever_the_rows_order(kept_faces, sample_run, tmp_path):
    """A manifest written in another row order (a script's, another tool's) gives the same
    identities, faces and order, so draws by index and --holdout-faces (each identity's last
    faces in crop-path order) take the same faces."""
    reversed_rows = kept_faces.take(list(range(kept_faces.num_rows - 1, -1, -1)))
    given = write_contract_folder(tmp_path / "reversed", {"train": reversed_rows}, sample_run)
    ordered = write_contract_folder(tmp_path / "ordered", {"train": kept_faces}, sample_run)
    assert read_manifest(given, ["crop_path"]).column(0).to_pylist()[0] != \
        read_manifest(ordered, ["crop_path"]).column(0).to_pylist()[0]
    def resolved(manifest):  # each folder names the run relative to itself
        return [(name, [(crop.resolve(), mask.resolve()) for crop, mask in faces])
                for name, faces in load_manifest(manifest).items()]

    identities = resolved(given)
    assert identities == resolved(ordered)
    assert [name for name, _ in identities] == sorted(name for name, _ in identities)
    assert all(faces == sorted(faces) for _, faces in identities)

def test_version_mismatch_and_foreign_files_are_clear_errors(sample_manifest, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(sample_manifest.parent, folder)
    sidecar = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**sidecar, "schema_version": "1"}))
    with pytest.raises(ManifestError, match=r"manifest.json: manifest schema version 1, this code reads version 3 \(and 2\)"):
        load_manifest(folder / "train.parquet")
    (folder / "manifest.json").write_text(json.dumps(sidecar))
    table = pq.read_table(folder / "train.parquet")
    pq.write_table(table.replace_schema_metadata({b"mfhq.schema_version": b"9"}), folder / "train.parquet")
    with pytest.raises(ManifestError, match=r"train.parquet: manifest schema version 9"):
        load_manifest(folder / "train.parquet")
    (folder / "train.parquet").write_text("identity_id,crop_path\nx,y.jpg\n")  # a CSV under the wrong name
    with pytest.raises(ManifestError, match=r"train.parquet: not a readable Parquet file"):
        build_loader(folder / "train.parquet", SIZE, 3, 2, batch_size=2)
    (folder / "manifest.json").unlink()
    with pytest.raises(ManifestError, match=r"manifest.json: missing"):
        load_manifest(folder / "test.parquet")


def test_missing_columns_and_files_are_named(sample_manifest, sample_run, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(sample_manifest.parent, folder)
    table = pq.read_table(folder / "train.parquet")
    pq.write_table(table.drop(["run"]), folder / "bad.parquet")
    with pytest.raises(ManifestError, match="bad.parquet: missing column.s. run"):
        load_manifest(folder / "bad.parquet")
    crops = table["crop_path"].to_pylist()
    crops[0] = "crops/nowhere.jpg"
    table = table.set_column(table.schema.get_field_index("crop_path"), "crop_path", [crops])
    pq.write_table(table, folder / "t.parquet")
    with pytest.raises(ManifestError, match=r"(?s)1 file.*crops/nowhere.jpg"):
        load_manifest(folder / "t.parquet")


@pytest.fixture(scope="module")
def damaged(sample_manifest, sample_run, tmp_path_factory):
    """A copy of the run and manifest with one truncated crop and one crop that is not a JPEG."""
    root = tmp_path_factory.mktemp("damaged")
    run = _copy_run(sample_run, root / "run")
    shutil.copytree(sample_manifest.parent, root / "m")
    faces = load_faces(root / "m", roots={"sample": run})
    truncated, garbage = faces[0].crop, faces[-1].crop
    truncated.write_bytes(truncated.read_bytes()[:600])
    garbage.write_bytes(b"this is not a jpeg" * 20)
    return root / "m" / "train.parquet", {"sample": run}, {str(truncated), str(garbage)}


def test_unreadable_crops_are_skipped_and_counted(damaged):
    manifest, roots, bad = damaged
    loader = build_loader(manifest, SIZE, 8, 8, batch_size=4, seed=0, roots=roots)
    for batch in islice(loader, 3):
        assert "bad_crops" not in batch and torch.isfinite(batch["inputs"]).all()
    assert set(loader.bad_crops) == bad  # every identity drawn 8 + 8 times: both files were met
    dataset = FaceDataset.from_manifest(manifest, SIZE, roots=roots)
    items = [dataset[i] for i in range(len(dataset))]
    assert set(dataset.reader.bad) == bad and all(item["crop_path"] not in bad for item in items)
    assert items[0]["image"].shape == (3, SIZE, SIZE) and items[0]["mask"].shape == (1, SIZE, SIZE)


def test_too_many_unreadable_crops_stop_the_run_naming_them(damaged, tmp_path, caplog):
    manifest, roots, bad = damaged
    loader = build_loader(manifest, SIZE, 8, 8, batch_size=4, seed=0, roots=roots, max_bad_crops=1)
    with pytest.raises(BadCropsError, match=r"(?s)2 crop/mask files could not be read.*limit of 1") as error:
        list(islice(loader, 3))
    assert all(path in str(error.value) for path in bad)
