"""Fixtures of the omniid tests: a few-to-many manifest built from the sample extract run (one
identity per clip), in the manifest contract's shape, so the trainer is tested without waiting
for cluster-sample. A module, not a conftest.py: a second `conftest` would shadow the one the
mfhq tests import from. Test modules import the fixtures they use."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

CONTRACT = ["identity_id", "split", "source", "video_key", "clip_id", "frame_index", "crop_path", "mask_path",
            "landmarks", "yaw", "pitch", "roll", "quality", "embedding"]


def write_manifest(faces: pa.Table, path: Path, root: Path | None) -> Path:
    table = faces.append_column("identity_id", faces["clip_id"])
    table = table.append_column("split", pa.array([path.stem] * table.num_rows))
    table = table.append_column("pose_cluster", pa.array(list(range(table.num_rows)), pa.int32()))
    pq.write_table(table.select(CONTRACT + ["pose_cluster"]), path)
    if root is not None:
        path.with_suffix(".json").write_text(json.dumps({"root": str(root), "schema_version": "test"}))
    return path


@pytest.fixture(scope="session")
def kept_faces(sample_run) -> pa.Table:
    faces = pq.read_table(sorted((sample_run / "faces").glob("*.parquet")))
    faces = faces.filter(pc.field("kept"))
    return faces.sort_by([("clip_id", "ascending"), ("frame_index", "ascending")])


@pytest.fixture(scope="session")
def sample_manifest(kept_faces, sample_run, tmp_path_factory) -> Path:
    """manifests/train.parquet (every kept face of 4 clips) + test.parquet (2 of the clips),
    relative paths resolved through the sidecar's `root`."""
    folder = tmp_path_factory.mktemp("manifests")
    clips = sorted(set(kept_faces["clip_id"].to_pylist()))
    assert len(clips) >= 4, clips
    write_manifest(kept_faces, folder / "train.parquet", sample_run)
    test = kept_faces.filter(pc.is_in(kept_faces["clip_id"], pa.array(clips[:2])))
    write_manifest(test, folder / "test.parquet", sample_run)
    return folder / "train.parquet"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny models are faster on one thread, and the test machines' cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
