"""A path as a manifest lists it works where a path is accepted: `resolve_listed_path` finds a
crop_path / mask_path value through the sidecar's runs, and `split_path` finds a split beside any
manifest file or inside its folder."""
from __future__ import annotations

import pytest

from mfhq.manifest import ManifestError, resolve_listed_path, split_path
from omniid_fixtures import kept_faces, sample_manifest  # noqa: F401  (pytest fixtures)


def test_a_listed_crop_or_mask_path_resolves_to_its_runs_file(sample_manifest, kept_faces, sample_run):
    crop, mask = kept_faces["crop_path"][0].as_py(), kept_faces["mask_path"][0].as_py()
    for given in (sample_manifest, sample_manifest.parent):  # a manifest file or its folder
        assert resolve_listed_path(crop, given).resolve() == (sample_run / crop).resolve()
        assert resolve_listed_path(mask, given).resolve() == (sample_run / mask).resolve()
    existing = sample_run / crop
    assert resolve_listed_path(existing, sample_manifest) == existing  # a real file stays as it is


def test_a_path_the_manifest_does_not_list_is_named(sample_manifest):
    with pytest.raises(ManifestError, match=r"crops/nobody\.jpg: no such file, and no crop_path or mask_path"):
        resolve_listed_path("crops/nobody.jpg", sample_manifest)


def test_a_moved_run_is_found_through_roots(sample_manifest, kept_faces, sample_run, tmp_path):
    crop = kept_faces["crop_path"][0].as_py()
    moved = tmp_path / "elsewhere"
    (moved / crop).parent.mkdir(parents=True)
    (moved / crop).write_bytes((sample_run / crop).read_bytes())
    assert resolve_listed_path(crop, sample_manifest, roots={sample_run.name: moved}) == moved / crop


def test_a_split_is_found_beside_a_file_or_inside_a_folder(tmp_path):
    folder = tmp_path / "manifests"
    folder.mkdir()
    assert split_path(folder, "test") == folder / "test.parquet"
    assert split_path(folder / "train.parquet", "test") == folder / "test.parquet"
    with pytest.raises(ValueError, match="split must be one of"):
        split_path(folder, "valid")
