"""Fixtures of the omniid tests: a few-to-many manifest built from the sample extract run (one
identity per clip), in the manifest contract's shape, so the trainer is tested without waiting
for cluster-sample. A module, not a conftest.py: a second `conftest` would shadow the one the
mfhq tests import from. Test modules import the fixtures they use."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mfhq.manifest.folder import run_entries, write_manifest_folder
from mfhq.manifest.schema import MANIFEST_SCHEMA


def contract_rows(faces: pa.Table, split: str, run: str) -> pa.Table:
    """Kept `faces/` rows -> manifest rows (one identity per clip), in the contract's schema."""
    n = faces.num_rows
    extra = {"identity_id": faces["clip_id"], "split": pa.array([split] * n), "source_split": pa.nulls(n, pa.string()),
             "run": pa.array([run] * n), "pose_cluster": pa.array(range(n), pa.int16()),
             "sample_rank": pa.array(range(n), pa.int16()), "short": pa.array([False] * n)}
    columns = {name: extra[name] if name in extra else faces[name] for name in MANIFEST_SCHEMA.names}
    return pa.table(columns).cast(MANIFEST_SCHEMA)


def write_contract_folder(folder: Path, parts: dict[str, pa.Table], run_dir: Path) -> Path:
    """A manifest folder as `mfhq cluster-sample` writes it (Parquet + manifest.json)."""
    runs = run_entries([run_dir], folder)
    write_manifest_folder(folder, {k: contract_rows(v, k, runs[0]["name"]) for k, v in parts.items()},
                          {"runs": runs, "pipeline": "test"}, MANIFEST_SCHEMA)
    return folder / "train.parquet"


@pytest.fixture(scope="session")
def kept_faces(sample_run) -> pa.Table:
    faces = pq.read_table(sorted((sample_run / "faces").glob("*.parquet")))
    faces = faces.filter(pc.field("kept"))
    return faces.sort_by([("clip_id", "ascending"), ("frame_index", "ascending")])


@pytest.fixture(scope="session")
def sample_manifest(kept_faces, sample_run, tmp_path_factory) -> Path:
    """manifests/train.parquet (every kept face of 4 clips) + test.parquet (2 of the clips),
    in the manifest contract (paths relative to the sample run, named in manifest.json)."""
    folder = tmp_path_factory.mktemp("manifests")
    clips = sorted(set(kept_faces["clip_id"].to_pylist()))
    assert len(clips) >= 4, clips
    test = kept_faces.filter(pc.is_in(kept_faces["clip_id"], pa.array(clips[:2])))
    return write_contract_folder(folder, {"train": kept_faces, "test": test}, sample_run)


@pytest.fixture(scope="session")
def split_manifest(kept_faces, sample_run, tmp_path_factory) -> Path:
    """Like sample_manifest, but split as cluster-sample splits: test.parquet's 2 clips are not
    among train.parquet's (sample_manifest's test clips are also training clips)."""
    clips = sorted(set(kept_faces["clip_id"].to_pylist()))
    held = pc.is_in(kept_faces["clip_id"], pa.array(clips[:2]))
    return write_contract_folder(tmp_path_factory.mktemp("split-manifests"),
                                 {"train": kept_faces.filter(pc.invert(held)), "test": kept_faces.filter(held)},
                                 sample_run)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny models are faster on one thread, and the test machines' cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mount_tmpfs(mount: Path, options: str) -> str | None:
    """Mounts a tmpfs at `mount` (made here); None, or why it could not (mounting needs root)."""
    import subprocess

    mount.mkdir(parents=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
    return None if made.returncode == 0 else made.stderr.decode().strip() or f"mount exited {made.returncode}"


def unmount(mount: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def progress_bars(monkeypatch) -> list:
    """The tqdm bars omniid-train makes during the test, in order (each kept to read its counts and label)."""
    from tqdm import tqdm

    from omniid import run_progress

    made = []

    class Recorded(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(run_progress, "tqdm", Recorded)
    return made


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """A folder on a read-only file system (a tmpfs mounted read-only: root is refused too)."""
    mount = tmp_path / "read-only"
    why = mount_tmpfs(mount, "ro,size=64k")
    if why is not None:
        pytest.skip(f"cannot mount a read-only tmpfs here (needs root): {why}")
    yield mount
    unmount(mount)


def train_flow(manifest: Path, out: Path, representation: str = "omniid", preset: str = "tiny") -> Path:
    """Two tiny flow steps: a run folder with an adapter (and the representation's trained part)."""
    from omniid.cli import main

    assert main(["--manifest", str(manifest), "--preset", preset, "--stage", "flow", "--out", str(out),
                 "--representation", representation, "--steps", "2", "--batch-size", "1", "--eval-every", "100",
                 "--save-every", "2"]) == 0
    return out


def write_eval_set(folder: Path, kept_faces: pa.Table, sample_run: Path, identities: int, faces: int,
                   every: int = 1) -> Path:
    """A manifest of `identities` clips as identities, `faces` crops each (every `every`-th
    frame), named id<N>/000.jpg... in protocol order; returns its test.parquet."""
    import shutil

    rows = []
    for n, clip in enumerate(sorted(set(kept_faces["clip_id"].to_pylist()))[:identities]):
        chosen = [r for r in kept_faces.to_pylist() if r["clip_id"] == clip][::every][:faces]
        assert len(chosen) == faces
        for i, face in enumerate(chosen):
            crop, mask = f"id{n}/{i:03d}.jpg", f"id{n}/{i:03d}.png"
            (folder / crop).parent.mkdir(exist_ok=True)
            shutil.copy(sample_run / face["crop_path"], folder / crop)
            shutil.copy(sample_run / face["mask_path"], folder / mask)
            rows.append({**face, "clip_id": f"id{n}", "crop_path": crop, "mask_path": mask})
    table = pa.Table.from_pylist(rows, schema=kept_faces.schema)
    write_contract_folder(folder, {"train": table, "test": table}, folder)
    return folder / "test.parquet"


def group_photo(path: Path) -> list[list[float]]:
    """A photo of two faces (the astronaut's, scikit-image, public domain: its aligned crop pasted
    large at the right and small at the left of a noisy frame) written to `path`; -> where each
    was pasted, [x0, y0, x1, y1], the large one first."""
    import cv2
    import numpy as np
    import skimage.data
    from PIL import Image

    from mfhq.faces import Faces

    photo = skimage.data.astronaut()
    faces = Faces.from_preset("sample", tasks=("detect",))
    crop = faces.crop(photo, faces.largest_face(photo)[1])
    frame = np.random.default_rng(0).integers(40, 120, (480, 800, 3), dtype=np.uint8)
    placed = []
    for fx, (x, y) in ((0.7, (420, 40)), (0.45, (60, 100))):
        face = cv2.resize(crop, None, fx=fx, fy=fx, interpolation=cv2.INTER_AREA)
        frame[y:y + face.shape[0], x:x + face.shape[1]] = face
        placed.append([x, y, x + face.shape[1], y + face.shape[0]])
    Image.fromarray(frame).save(path)
    return placed
