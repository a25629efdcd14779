"""Which faces omniid-eval uses (`omniid.eval_plan.fit`, docs/eval.md "The protocol"), on the rows
of a real manifest folder read as omniid-eval reads it: per identity, faces in crop-path order;
the inputs of every k are the first k of them; the targets are the faces after the first max(k),
never an input and the same for every k; a k no identity can serve (k + 1 faces) is left out; an
identity with fewer than max(k) + 1 faces is skipped and listed; --targets is cut to what remains.
No model and no generation: the eval integration tests train two flow runs for this."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from mfhq.manifest.folder import run_entries, write_manifest_folder
from mfhq.manifest.schema import MANIFEST_SCHEMA
from omniid.data import load_faces
from omniid.errors import DataError
from omniid.eval_plan import fit

# faces per identity: 7 and 5 (kept), 4 (exactly max(k) + 1 for k 1,3: one target), 3 (exactly
# max(k): no face left for a target), 1
FACES = {"ana": 7, "ben": 5, "cai": 4, "dee": 3, "eve": 1}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """test.parquet of a manifest folder, its rows in shuffled order, crops that are real JPEGs."""
    root = tmp_path_factory.mktemp("plan")
    run, folder = root / "run", root / "manifests"
    rows = []
    for identity, n in FACES.items():
        for i in range(n):
            crop = Path("crops") / identity / f"f{i:02d}.jpg"
            (run / crop).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(run / crop)
            rows.append(_row(identity, i, str(crop)))
    random.Random(0).shuffle(rows)  # the order is the crop paths', not the rows'
    table = pa.Table.from_pylist(rows)
    write_manifest_folder(folder, {"test": table}, {"runs": run_entries([run], folder), "pipeline": "test"},
                          MANIFEST_SCHEMA)
    return folder / "test.parquet"


def _row(identity: str, i: int, crop: str) -> dict:
    return {"identity_id": identity, "split": "test", "source_split": None, "source": "test", "video_key": identity,
            "clip_id": identity, "frame_index": i, "face_index": 0, "run": "run", "crop_path": crop, "mask_path": None,
            "landmarks": [0.0] * 10, "face_size": 16.0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0, "quality": 1.0,
            "pose_cluster": 0, "sample_rank": i, "short": False, "embedding": [1.0], "provenance": "test"}


def identities(manifest: Path) -> dict[str, list[Path]]:
    """identity -> crops, as omniid-eval reads its manifest (crops alone)."""
    found: dict[str, list[Path]] = {}
    for face in load_faces(manifest, crops_only=True):
        found.setdefault(face.identity, []).append(face.crop)
    return found


def faces_of(identity: str, numbers) -> list[str]:
    return [f"{identity}/f{i:02d}.jpg" for i in numbers]


def named(paths: list[Path]) -> list[str]:
    """A crop as `faces_of` names it (the manifest resolves it through its run's folder)."""
    return [f"{p.parent.name}/{p.name}" for p in paths]


def test_inputs_are_the_first_faces_and_targets_come_after_the_largest_k(manifest):
    faces = identities(manifest)
    fitted = fit(faces, sorted(faces), (1, 3), None, str(manifest))
    assert fitted.ks == (1, 3) and fitted.notes == []
    assert sorted(fitted.plans) == ["ana", "ben", "cai"]
    for name, plan in fitted.plans.items():
        assert named(plan.inputs) == faces_of(name, range(3))  # k 1 reads inputs[:1], k 3 all three
        assert named(plan.targets) == faces_of(name, range(3, FACES[name]))  # every face after them
        assert not set(plan.targets) & set(plan.inputs)
        assert plan.ks == (1, 3)
    # 3 faces are 3 inputs and no target; 1 face not even those
    assert fitted.skipped == {"dee": "3 faces; the protocol needs 4", "eve": "1 faces; the protocol needs 4"}
    # the rows' order does not matter: faces are taken in crop-path order
    backwards = fit({n: f[::-1] for n, f in faces.items()}, sorted(faces), (1, 3), None, str(manifest))
    assert {n: (named(p.inputs), named(p.targets)) for n, p in backwards.plans.items()} == {
        n: (named(p.inputs), named(p.targets)) for n, p in fitted.plans.items()}


def test_a_k_no_identity_can_serve_is_left_out_and_targets_are_cut_to_what_remains(manifest):
    faces = identities(manifest)
    # 7 inputs need 8 faces: ana has exactly 7, so k 7 goes and the largest k is 3
    fitted = fit(faces, sorted(faces), (1, 3, 7), 2, str(manifest))
    assert fitted.ks == (1, 3)
    assert {n: named(p.targets) for n, p in fitted.plans.items()} == {
        "ana": faces_of("ana", [3, 4]), "ben": faces_of("ben", [3, 4]), "cai": faces_of("cai", [3])}
    assert fitted.notes == [
        "--inputs 7 left out: k inputs need k + 1 faces and the identities have at most 7",
        "--targets 2: after the first 3 inputs only 1 face(s) remain for 1 of 3 identities; they are evaluated "
        "with what remains"]


def test_the_ks_fit_the_evaluated_identities(manifest):
    """--identities picks dee and eve: k 3 needs 4 faces, which neither has, so only k 1 is evaluated;
    dee's faces after the first then are its targets."""
    faces = identities(manifest)
    fitted = fit(faces, ["dee", "eve"], (1, 3), None, str(manifest))
    assert fitted.ks == (1,)
    dee = fitted.plans["dee"]
    assert (named(dee.inputs), named(dee.targets)) == (faces_of("dee", [0]), faces_of("dee", [1, 2]))
    assert fitted.skipped == {"eve": "1 faces; the protocol needs 2"}
    with pytest.raises(DataError, match=r"test\.parquet: no identity has the 2 faces the protocol needs"):
        fit(faces, ["eve"], (1, 3), None, str(manifest))


def test_a_swap_check_left_out_for_want_of_a_second_identity_is_said_on_the_console(caplog):
    """Asked for (the default) on a test set of one identity, the swap check cannot run: the
    console says so, not only settings.json (a user otherwise finds no swap table, unexplained)."""
    import logging

    from omniid.evaluate import Protocol, _swap_settings

    with caplog.at_level(logging.WARNING, logger="omniid"):
        assert _swap_settings({}, [], Protocol(), 1, False) == {"skipped": "1 identity evaluated; the swap needs 2 or more"}
        assert _swap_settings({}, [], Protocol(swap=False), 1, False) == {"skipped": "turned off (--no-swap)"}
    said = [r.getMessage() for r in caplog.records]
    assert said == ["identity-swap check not run: 1 identity evaluated; the swap needs 2 or more (settings.json's "
                    "swap.skipped)"]  # once, and not for a swap turned off by the user
