"""Shared fixtures: the bundled sample, generated once, and one extract run over it."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach a model hub

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PRESET = REPO / "pipelines" / "sample.yaml"


def run_cli(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """The real console entry point, in a subprocess, as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "mfhq", *args], capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"mfhq {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session", autouse=True)
def graph_cache(tmp_path_factory) -> Path:
    """Rewritten model graphs go to this session's folder (inherited by CLI subprocesses), not the user's cache."""
    folder = tmp_path_factory.mktemp("mfhq-cache")
    os.environ["MFHQ_CACHE_DIR"] = str(folder)
    return folder


def made_once(tmp_path_factory, name: str, make, copy: bool = False) -> Path:
    """make(an empty folder) -> the artefact's path, called once per `pytest` run. Under
    pytest-xdist the workers share that one artefact, as the tests of one process do: the first
    worker to ask makes it while the others wait on a lock (stdlib flock, Linux and macOS).
    copy: each worker gets its own copy, in its own folder where one process would have made it
    (for an artefact whose path relative to the tests' folders is recorded, as manifests record
    their runs' relative paths)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return make(tmp_path_factory.mktemp(name))
    root = tmp_path_factory.getbasetemp().parent  # this run's folder, above each worker's own
    made = root / f"{name}.made"  # the artefact's path, written once it is whole
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not made.exists():
            shutil.rmtree(root / name, ignore_errors=True)  # a worker that failed making it left this
            (root / name).mkdir()
            made.write_text(str(make(root / name)))
    shared = Path(made.read_text())
    if not copy:
        return shared
    mine = tmp_path_factory.mktemp(name) / shared.relative_to(root / name)
    shutil.copytree(shared, mine)
    return mine


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    def make(out: Path) -> Path:
        run_cli("sample", "--out", str(out))
        return out

    return made_once(tmp_path_factory, "sample", make)


@pytest.fixture(scope="session")
def sample_meta(sample_dir) -> dict:
    return json.loads((sample_dir / "sample.json").read_text())


@pytest.fixture(scope="session")
def sample_run(sample_dir, tmp_path_factory) -> Path:
    """One uninterrupted extract over the sample through the CLI (the demo path)."""
    def make(folder: Path) -> Path:
        run = folder / "sample"
        run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(run), "--pipeline", str(SAMPLE_PRESET))
        return run

    return made_once(tmp_path_factory, "runs", make, copy=True)


@pytest.fixture(scope="session")
def manifests(sample_run, tmp_path_factory) -> Path:
    """`mfhq cluster-sample` over the sample run through the CLI (tests only read it)."""
    out = tmp_path_factory.mktemp("manifests")
    run_cli("cluster-sample", "--run", str(sample_run), "--out", str(out), "--pipeline", str(SAMPLE_PRESET))
    return out


@pytest.fixture(scope="session")
def detector():
    """The offline profile's detector (YuNet + dlib 68), loaded once for every test that needs it."""
    from mfhq.models import create_backend

    backend = create_backend("detector", "yunet-dlib68")
    backend.setup()
    return backend


@pytest.fixture(scope="session")
def astronaut():
    """scikit-image's astronaut photo (public domain), BGR like decoded frames."""
    import numpy as np
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])


@pytest.fixture(scope="session")
def astronaut_hull(detector, astronaut):
    """The offline hull mask of the astronaut's aligned 448 px crop, with what made it:
    {found, matrix, crop, in_crop (the 5 points in the crop), mask}."""
    from mfhq.align import arcface_template, similarity_transform, warp
    from mfhq.models import create_backend

    parsing = create_backend("parsing", "dlib68-hull")
    parsing.setup()
    found = detector.detect([astronaut])[0]
    matrix = similarity_transform(found.landmarks[0], arcface_template(448))
    crop = warp(astronaut, matrix, 448)
    in_crop = found.landmarks[0] @ matrix[:, :2].T + matrix[:, 2]
    mask = parsing.masks(crop[None], in_crop[None])[0]
    return {"found": found, "matrix": matrix, "crop": crop, "in_crop": in_crop, "mask": mask}
