"""The source's own person ids within a video, as a constraint on the identity merge (ours).

VFHQ names the person of each clip within its video (`P<pid>`, up to 41 people in a talk show);
the clip rows carry it as `person_key` (null where a source has none). Two clips of one source
video with different person keys are two people by the source's own annotation, however alike
their faces: no edge joins them, directly or through any chain of other clips and videos. The
merge takes its edges most alike first (ties by clip code), and an edge is refused when the two
identities it would join hold different person keys of one video; clips without a key join as
they would without this constraint. Without any person key nothing here runs.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REFUSED = "person_key"  # the evidence's `by` of an edge this constraint refused


def person_codes(clips: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
    """(slot, person) codes per clip, -1 for a clip without a person key: a slot is one source
    video of one source (two sources' ids of the same YouTube video do not name the same people),
    a person one key within its slot. None when no clip has a key."""
    if "person_key" not in clips.column_names or clips.column("person_key").null_count == clips.num_rows:
        return None
    source = clips.column("source") if "source" in clips.column_names else pa.nulls(clips.num_rows, pa.string())
    parts = [pc.cast(c, pa.string()).fill_null("") for c in (source, clips.column("video_key"))]
    video = pc.binary_join_element_wise(*parts, "\x00")
    person = pc.binary_join_element_wise(video, clips.column("person_key"), "\x00")  # null without a key
    keyed = pc.is_valid(person).to_numpy(zero_copy_only=False)
    slot_codes = video.combine_chunks().dictionary_encode().indices.to_numpy()
    person_codes_ = pc.cast(person, pa.string()).fill_null("").combine_chunks().dictionary_encode().indices.to_numpy()
    return (np.where(keyed, slot_codes, -1).astype(np.int64), np.where(keyed, person_codes_, -1).astype(np.int64))


class PersonGuard:
    """Union-find over the clips whose components remember, per slot, the one person key they
    hold there; a union that would give a component two keys of one slot is refused."""

    def __init__(self, slot: np.ndarray, person: np.ndarray):
        self.parent = list(range(len(slot)))
        self.keyed = slot >= 0
        self.keys: dict[int, dict[int, int]] = {int(i): {int(slot[i]): int(person[i])} for i in np.flatnonzero(slot >= 0)}
        self.refused = 0
        self.refused_edges: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> int:
        """1: joined two components; 0: one component already; -1: refused."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return 0
        ka, kb = self.keys.get(ra), self.keys.get(rb)
        if ka is not None and kb is not None:
            if len(ka) < len(kb):
                ka, kb = kb, ka
            if any(ka.get(slot, person) != person for slot, person in kb.items()):
                return -1
            ka.update(kb)
        self.parent[rb] = ra
        self.keys.pop(rb, None)
        self.keys.pop(ra, None)
        if ka is not None or kb is not None:
            self.keys[ra] = ka if ka is not None else kb
        return 1

    def take(self, a: np.ndarray, b: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Each edge's outcome (1 joined, 0 within one component, -1 refused), the edges taken
        most alike first, ties by (a, b): the outcome does not depend on the order given."""
        outcome = np.zeros(len(a), np.int8)
        for i in np.lexsort((b, a, -s.astype(np.float64))).tolist():
            outcome[i] = self.union(int(a[i]), int(b[i]))
        refused = outcome < 0
        self.refused += int(refused.sum())
        self.refused_edges.append((a[refused], b[refused], s[refused]))
        return outcome

    def components(self) -> np.ndarray:
        return np.asarray([self.find(x) for x in range(len(self.parent))], np.int64)


def refused_evidence(guard: PersonGuard, comp: np.ndarray) -> tuple | None:
    """The most alike refused edge between each two identities, once in each one's evidence
    (its `a` the identity's own clip), as an evidence edge list entry; None when none."""
    if not guard.refused:
        return None
    a = np.concatenate([e[0] for e in guard.refused_edges]).astype(np.int64)
    b = np.concatenate([e[1] for e in guard.refused_edges]).astype(np.int64)
    s = np.concatenate([e[2] for e in guard.refused_edges]).astype(np.float32)
    lo, hi = np.minimum(comp[a], comp[b]), np.maximum(comp[a], comp[b])
    order = np.lexsort((b, a, -s.astype(np.float64), hi, lo))
    first = order[np.r_[True, (lo[order][1:] != lo[order][:-1]) | (hi[order][1:] != hi[order][:-1])]]
    a, b, s = a[first], b[first], s[first]
    return np.r_[a, b], np.r_[b, a], np.r_[s, s], REFUSED
