"""Rewritten ONNX graphs kept on disk: a cached graph runs exactly like a fresh rewrite, a worker
with a warm cache never imports onnx, and a damaged, stale or unwritable cache is never trusted
and never fails a load."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mfhq.models import create_backend, graph_cache, sface, yunet
from mfhq.models.sface import SFACE, load_sface_graph
from mfhq.models.yunet import YUNET


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(graph_cache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "graphs"


def _entries(cache) -> list:
    return sorted(cache.glob(f"*{graph_cache.SUFFIX}"))


def _loaded(task: str, name: str):
    backend = create_backend(task, name)
    backend.setup()
    return backend


def _no_rewrite(monkeypatch):
    """Rewriting fails from here on: a load that succeeds read its graph from the cache."""
    def refuse(path):
        raise AssertionError(f"{path} was rewritten, not read from the cache")

    monkeypatch.setattr(yunet, "yunet_graph", refuse)
    monkeypatch.setattr(sface, "load_sface_graph", lambda path: refuse(path))


def test_a_cached_graph_is_the_fresh_rewrite_and_detects_and_embeds_the_same(cache, monkeypatch, astronaut):
    fresh_detector, fresh_embedder = _loaded("detector", "yunet"), _loaded("embedder", "sface")
    assert len(_entries(cache)) == 2  # written by the first loads
    _no_rewrite(monkeypatch)
    cached_detector, cached_embedder = _loaded("detector", "yunet"), _loaded("embedder", "sface")

    found, again = fresh_detector.detect([astronaut])[0], cached_detector.detect([astronaut])[0]
    assert len(found.scores) == 1
    for a, b in ((found.boxes, again.boxes), (found.landmarks, again.landmarks), (found.scores, again.scores)):
        np.testing.assert_array_equal(a, b)
    crops = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    np.testing.assert_array_equal(fresh_embedder.embed(crops), cached_embedder.embed(crops))


def test_the_entry_holds_the_rewrite_byte_for_byte(cache):
    detector = _loaded("detector", "yunet")
    made = yunet.yunet_graph(detector.paths[YUNET.name])
    key = graph_cache.entry_key(detector.paths[YUNET.name], "yunet-float-free-size", yunet.REWRITE_CODE)
    assert graph_cache._read(_entries(cache)[0], key) == made


def _damage(entry, how: str) -> None:
    data = bytearray(entry.read_bytes())
    if how == "flipped":
        data[len(data) // 2] ^= 0xFF
        entry.write_bytes(bytes(data))
    elif how == "truncated":
        entry.write_bytes(bytes(data[: len(data) - 1000]))
    elif how == "stale":  # another key's header (another source or rewrite code) under this name
        header, _, payload = bytes(data).partition(b"\n")
        fields = header.split(b" ")
        fields[2] = b"0" * len(fields[2])
        entry.write_bytes(b" ".join(fields) + b"\n" + payload)
    else:
        entry.write_bytes(b"not a graph at all")


@pytest.mark.parametrize("how", ["flipped", "truncated", "stale", "garbage"])
def test_a_damaged_or_stale_entry_is_ignored_and_rewritten(cache, how, caplog, sample_frame):
    reference = _loaded("detector", "yunet").detect([sample_frame])[0]
    entry = _entries(cache)[0]
    intact = entry.read_bytes()
    _damage(entry, how)
    with caplog.at_level("WARNING", logger="mfhq.models.graph_cache"):
        reloaded = _loaded("detector", "yunet")
    assert any("cached graph ignored" in r.getMessage() for r in caplog.records)
    assert entry.read_bytes() == intact  # rewritten whole
    again = reloaded.detect([sample_frame])[0]
    np.testing.assert_array_equal(reference.boxes, again.boxes)
    np.testing.assert_array_equal(reference.landmarks, again.landmarks)


def test_an_unwritable_cache_folder_falls_back_to_rewriting_in_memory(tmp_path, monkeypatch, sample_frame):
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made under a file")
    monkeypatch.setenv(graph_cache.CACHE_DIR_ENV, str(blocker))
    detector = _loaded("detector", "yunet")  # no error
    assert len(detector.detect([sample_frame])[0].scores) >= 1
    assert blocker.read_text().startswith("the cache folder")


def test_new_weights_or_rewrite_code_make_a_new_entry_and_drop_the_old(cache):
    path = _loaded("embedder", "sface").paths[SFACE.name]
    old = graph_cache.entry_path(path, "sface-float-split-prelu", sface.REWRITE_CODE)
    assert _entries(cache) == [old]
    code = ("mfhq.models.onnx_graph",)  # another rewrite code: another key
    graph_cache.rewritten_graph(path, "sface-float-split-prelu", code, lambda p: load_sface_graph(p).SerializeToString())
    assert _entries(cache) == [graph_cache.entry_path(path, "sface-float-split-prelu", code)] != [old]


def test_a_worker_with_a_warm_cache_loads_without_importing_onnx(cache):
    """onnx's import (~0.5 s, mostly ml_dtypes) was paid by every worker only to rewrite graphs."""
    script = ("import sys\n"
              "from mfhq.models import create_backend\n"
              "for task, name in (('detector', 'yunet-dlib68'), ('embedder', 'sface')):\n"
              "    create_backend(task, name).setup()\n"
              "print('onnx' in sys.modules, 'ml_dtypes' in sys.modules)\n")
    env_run = [sys.executable, "-c", script]
    first = subprocess.run(env_run, capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["True", "True"]  # a cold cache: rewritten, and kept
    second = subprocess.run(env_run, capture_output=True, text=True, check=True)
    assert second.stdout.split() == ["False", "False"], second.stderr


@pytest.fixture(scope="module")
def sample_frame(sample_dir, sample_meta):
    from mfhq.config import DecodeConfig
    from mfhq.decode import ClipDecoder

    clip = next(c for c in sample_meta["clips"] if c["expected_status"] == "ok")
    decoder = ClipDecoder(DecodeConfig())
    decoder.open(sample_dir / clip["file"])
    frame = decoder.reader.read([0])[0]
    decoder.close()
    return frame
