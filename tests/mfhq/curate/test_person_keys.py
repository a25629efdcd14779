"""The source's person ids within a video (VFHQ's P<pid>, the clip rows' person_key) on real run
folders: two pids of one video are never one identity, however alike their faces, neither by the
video-key merge nor through a chain of the embedding merge; one pid's clips still need the guard."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from mfhq.manifest import read_manifest
from synthetic_runs import ClipSpec, write_run

SHOW, OTHER, BRIDGE = "synthVF-pk1", "synthVF-pk2", "synthVF-pk3"  # SYNTHETIC 11-character video ids


def _vfhq(video: str, pid: int, clip: int, person: int, **kw) -> ClipSpec:
    return ClipSpec("vfhq", f"Clip+{video}+P{pid}+C{clip}+F{100 * clip}-{100 * clip + 90}", video, person,
                    person_key=f"P{pid}", **kw)


def _identities(out) -> dict[str, dict]:
    return {r["clip_id"]: r for r in read_manifest(out / "identities.parquet").to_pylist()}


def _refused(row: dict) -> list[dict]:
    return [e for e in json.loads(row["evidence"] or "[]") if e["by"] == "person_key"]


@pytest.mark.parametrize("embedding", [False, True], ids=["paper-merge", "sample-merge"])
def test_two_pids_of_one_video_stay_two_identities_however_alike(tmp_path, caplog, embedding):
    # A talk show: P1 looks like P0 (the same face direction: cosine ~0.9, far above the 0.3 guard),
    # and P0's third clip tracked someone else's face (under the guard: it stays apart).
    p0a, p0b, p1 = _vfhq(SHOW, 0, 0, person=1), _vfhq(SHOW, 0, 1, person=1), _vfhq(SHOW, 1, 0, person=1)
    stray = _vfhq(SHOW, 0, 2, person=9)
    run = write_run(tmp_path / "run", [p0a, p0b, p1, stray, _vfhq(OTHER, 0, 0, person=7)])
    with caplog.at_level(logging.INFO, logger="mfhq.curate"):
        cluster_sample([run], tmp_path / "m", CurateConfig(merge_by_embedding=embedding, test_videos=1))
    rows = _identities(tmp_path / "m")
    assert rows[p0a.clip_id]["identity_id"] == rows[p0b.clip_id]["identity_id"] == f"vfhq/{p0a.clip_id}"
    assert rows[p1.clip_id]["identity_id"] == f"vfhq/{p1.clip_id}" and rows[p1.clip_id]["decision"] == "own"
    assert rows[stray.clip_id]["identity_id"] == f"vfhq/{stray.clip_id}"
    # Both pairs of P1 with P0 were refused; the most alike is in both identities' evidence.
    assert "2 pairs of clips of one video at cosine >= 0.3 refused by their person keys" in caplog.text
    [edge] = _refused(rows[p1.clip_id])
    assert edge["a"] == f"vfhq/{p1.clip_id}" and edge["b"] in (f"vfhq/{p0a.clip_id}", f"vfhq/{p0b.clip_id}")
    assert edge["similarity"] > 0.8
    assert [(e["a"], e["b"]) for e in _refused(rows[p0a.clip_id])] == [(edge["b"], edge["a"])]
    assert [e["by"] for e in json.loads(rows[p0a.clip_id]["evidence"])] == ["video_key", "person_key"]
    # The same clips from a source without person ids (CelebV-HQ-like): the guard alone decides,
    # as it always did, and no evidence names person keys.
    plain = [ClipSpec("celebvhq", f"{s.video_key}_{i}", s.video_key, s.person) for i, s in enumerate([p0a, p0b, p1, stray])]
    run = write_run(tmp_path / "plain", plain + [ClipSpec("celebvhq", f"{OTHER}_0", OTHER, person=7)])
    cluster_sample([run], tmp_path / "p", CurateConfig(merge_by_embedding=embedding, test_videos=1))
    rows = _identities(tmp_path / "p")
    assert [rows[s.clip_id]["identity_id"] for s in plain] == [f"celebvhq/{SHOW}_0"] * 3 + [f"celebvhq/{SHOW}_3"]
    assert not any(_refused(r) for r in rows.values()) and rows[f"{SHOW}_3"]["evidence"] is None


def test_without_the_guard_the_key_joins_one_pid_and_never_two(tmp_path):
    """video_key_min_similarity: null (the video key alone joins): one pid's clips join, even the
    unalike one, and another pid of the video stays apart, look-alike or not."""
    p0a, p0b, p1 = _vfhq(SHOW, 0, 0, person=1), _vfhq(SHOW, 0, 1, person=9), _vfhq(SHOW, 1, 0, person=1)
    p2 = _vfhq(SHOW, 2, 0, person=5)
    run = write_run(tmp_path / "run", [p0a, p0b, p1, p2, _vfhq(OTHER, 0, 0, person=7)])
    cfg = CurateConfig(merge_by_embedding=False, video_key_min_similarity=None, test_videos=1)
    cluster_sample([run], tmp_path / "m", cfg)
    rows = _identities(tmp_path / "m")
    assert [rows[s.clip_id]["identity_id"] for s in (p0a, p0b, p1, p2)] == [
        f"vfhq/{p0a.clip_id}", f"vfhq/{p0a.clip_id}", f"vfhq/{p1.clip_id}", f"vfhq/{p2.clip_id}"]


@pytest.mark.parametrize("bridge_source", ["vfhq", "celebvhq"])
def test_a_chain_through_another_video_does_not_join_two_pids(tmp_path, caplog, bridge_source):
    # P0 and P1 of one video are unalike (under the guard); a clip of another video shows a face
    # between the two (cosine ~0.7 to each, above the embedding merge's 0.6): without person keys
    # the sample preset's embedding merge would chain all three into one identity.
    p0, p1 = _vfhq(SHOW, 0, 0, person=1, faces=60), _vfhq(SHOW, 1, 0, person=2, faces=60)
    bridge = (_vfhq(BRIDGE, 0, 0, person=1, also=2, faces=60) if bridge_source == "vfhq"
              else ClipSpec("celebvhq", f"{BRIDGE}_0", BRIDGE, person=1, also=2, faces=60))
    run = write_run(tmp_path / "run", [p0, p1, bridge, _vfhq(OTHER, 0, 0, person=7)])
    with caplog.at_level(logging.INFO, logger="mfhq.curate"):
        cluster_sample([run], tmp_path / "m", CurateConfig(test_videos=1))
    rows = _identities(tmp_path / "m")
    key = {name: f"{bridge_source if name == 'bridge' else 'vfhq'}/{spec.clip_id}"
           for name, spec in (("p0", p0), ("p1", p1), ("bridge", bridge))}
    assert rows[p0.clip_id]["identity_id"] != rows[p1.clip_id]["identity_id"]
    # The most alike edge was taken, the other refused: the bridge joined the one it is closer to.
    joined = [e for e in json.loads(rows[bridge.clip_id]["evidence"]) if e["by"] == "embedding"]
    [refused] = _refused(rows[bridge.clip_id])
    assert len(joined) == 1 and joined[0]["similarity"] >= refused["similarity"] >= 0.6
    near, far = (p0, p1) if key["p0"] in (joined[0]["a"], joined[0]["b"]) else (p1, p0)
    assert rows[bridge.clip_id]["identity_id"] == rows[near.clip_id]["identity_id"] != rows[far.clip_id]["identity_id"]
    assert refused["a"] == key["bridge"] and refused["b"] == f"vfhq/{far.clip_id}"
    assert "embedding merge: 1 edges refused: they would join two person keys of one video" in caplog.text


def test_the_outcome_does_not_depend_on_the_order_of_the_edges():
    """Edges are taken most alike first, ties by clip code: a chain a-b-c whose ends hold two
    person keys of one video keeps its stronger link, in whatever order the edges come."""
    from mfhq.curate.persons import PersonGuard  # here: the run-folder tests above need no such module

    slot, person = np.array([0, -1, 0, -1]), np.array([0, -1, 1, -1])  # clips 0 and 2: P0 and P1 of one video
    a, b, s = np.array([0, 1, 1, 2]), np.array([1, 2, 3, 3]), np.array([0.7, 0.9, 0.8, 0.8], np.float32)
    outcomes = set()
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        guard = PersonGuard(slot, person)
        got = guard.take(a[order], b[order], s[order])
        outcomes.add(tuple(got[np.argsort(order)].tolist()))
        assert guard.refused == 1
    assert outcomes == {(-1, 1, 1, 0)}  # 1-2 joined first, 1-3 and 2-3 tie (2-3 after 1-3), 0-1 refused


def test_a_key_joined_through_a_clip_that_is_not_its_roots_still_refuses_the_other_pid():
    """A chain P0 - x - y - P1 (x, y of other videos, no key) whose second link reaches y, not
    its component's root: the keys must follow the root, or P1 joins P0 through x."""
    from mfhq.curate.persons import PersonGuard

    slot, person = np.array([0, -1, -1, 0]), np.array([0, -1, -1, 1])  # clips 0 and 3: P0 and P1 of one video
    a, b, s = np.array([1, 0, 3]), np.array([2, 2, 1]), np.array([0.95, 0.9, 0.85], np.float32)
    guard = PersonGuard(slot, person)
    assert guard.take(a, b, s).tolist() == [1, 1, -1] and guard.refused == 1
    comp = guard.components()
    assert comp[0] == comp[1] == comp[2] != comp[3]
