"""The `evidence` column: the merge edges that formed each identity, as JSON.

Written without a Python object per edge: at MFHQ size the video-key merge alone gives ~70k
edges, and dicts through `json.dumps` cost more than the merge's search. The text is the one
`json.dumps(sorted(edges, key=(a, b, by)))` writes, item for item.
"""
from __future__ import annotations

import json

import numpy as np

MAX_EVIDENCE = 50  # edges listed per identity; a huge component keeps its first ones


def evidence_column(keys: np.ndarray, comp: np.ndarray, size: np.ndarray, edges: list) -> list:
    """Per clip, its identity's edges as a JSON list (None for an identity without edges: one of
    one clip, unless an edge the person keys refused names it, mfhq.curate.persons).

    keys: clip keys (str); comp: component per clip; size: clips in the clip's component;
    edges: (a, b, similarity, by) arrays per merge rule, in the order they were found."""
    n_comp = int(comp.max()) + 1 if len(comp) else 0
    text = np.full(n_comp, None, dtype=object)
    if edges:
        a = np.concatenate([np.asarray(e[0], np.int64) for e in edges])
        b = np.concatenate([np.asarray(e[1], np.int64) for e in edges])
        s = np.concatenate([np.asarray(e[2], np.float32) for e in edges])
        by = np.concatenate([np.full(len(e[0]), e[3], dtype=object) for e in edges]).astype(str)
        if len(a):
            _fill(text, keys, comp, a, b, s, by)
    return text[comp].tolist()


def _fill(text: np.ndarray, keys: np.ndarray, comp: np.ndarray, a, b, s, by) -> None:
    owner = comp[a]
    order = np.argsort(owner, kind="stable")  # the first MAX_EVIDENCE edges of each component, as found
    starts = np.searchsorted(owner[order], owner[order], side="left")
    first = order[np.arange(len(order)) - starts < MAX_EVIDENCE]
    names = keys.astype(str)
    rank = np.empty(len(names), np.int64)
    rank[np.argsort(names, kind="stable")] = np.arange(len(names))  # code-point order, as str compares
    by_names, by_code = np.unique(by[first], return_inverse=True)  # sorted names: their codes sort alike
    first = first[np.lexsort((by_code, rank[b[first]], rank[a[first]], owner[first]))]
    quoted = {int(i): json.dumps(str(keys[i])) for i in np.unique(np.concatenate([a[first], b[first]])).tolist()}
    by_json = {name: json.dumps(name) for name in by_names.tolist()}
    items = [f'{{"a": {quoted[i]}, "b": {quoted[j]}, "by": {by_json[k]}, "similarity": {round(x, 4)!r}}}'
             for i, j, k, x in zip(a[first].tolist(), b[first].tolist(), by[first].tolist(), s[first].tolist())]
    bounds = np.flatnonzero(np.diff(owner[first])) + 1
    for c, lo, hi in zip(owner[first][np.concatenate([[0], bounds])].tolist(),
                         np.concatenate([[0], bounds]).tolist(), np.concatenate([bounds, [len(first)]]).tolist()):
        text[c] = "[" + ", ".join(items[lo:hi]) + "]"
