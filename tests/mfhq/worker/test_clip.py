"""Batching across a shard's clips (for a GPU) changes how model stages are called, never a row."""
from __future__ import annotations

import pytest

from conftest import SAMPLE_PRESET
from mfhq.config import load_pipeline
from mfhq.worker.clip import ClipProcessor
from mfhq.records import Clip
from mfhq.sources import get_source


def _process(processor: ClipProcessor, clips: list[Clip]) -> dict:
    out = {}
    processor.process_many(clips, lambda key, phase, *others: None, lambda clip, faces, row: out.__setitem__(clip.key, (faces, row)))
    for faces, row in out.values():
        row.pop("stage_seconds")
    return out


def _count_model_calls(processor: ClipProcessor) -> list[int]:
    """Faces per call of the embedding model (a stage that now runs once per group of clips)."""
    sizes = []
    embed = next(s for s in processor.stages if s.name == "embed")
    original = embed.backend.embed

    def counting(crops):
        sizes.append(len(crops))
        return original(crops)

    embed.backend.embed = counting
    return sizes


def test_clips_batched_together_give_the_rows_of_one_clip_at_a_time(sample_dir, tmp_path):
    # Chunks of 3 sampled frames: a run of one face (embed.every 4) goes on across chunks, and the
    # frames the schedule holds back meet other clips' chunks in the model calls.
    cfg = load_pipeline(SAMPLE_PRESET).replace(decode={"fps": 2, "chunk_frames": 3})
    clips = [c for c in get_source("folder", sample_dir / "videos").scan() if isinstance(c, Clip)]
    processor = ClipProcessor(cfg, tmp_path / "one")
    processor.setup()
    assert processor.batch_frames == 0  # on CPU: one clip's chunk at a time
    faces_per_call = _count_model_calls(processor)
    alone = _process(processor, clips)
    calls_alone, faces_per_call[:] = list(faces_per_call), []

    # What `--device cuda` does, on CPU here: gather chunks of several clips per model call.
    calls = []
    detect = processor.stages[0]
    original = detect.call_many

    def recording(batches):
        calls.append(sorted({b.clip.key for b in batches}))
        return original(batches)

    detect.call_many = recording
    processor.batch_frames = 40
    processor.run_dir = tmp_path / "many"
    together = _process(processor, clips)
    assert any(len(keys) > 1 for keys in calls), "no model call saw more than one clip"
    # the models really ran once per group: fewer, larger calls over the same faces
    assert sum(faces_per_call) == sum(calls_alone) and len(faces_per_call) < len(calls_alone)
    assert together.keys() == alone.keys() and together == alone
    assert sorted(p.relative_to(tmp_path / "many") for p in (tmp_path / "many").rglob("*.jpg")) == \
        sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.jpg"))


def test_a_grouped_call_that_fails_redoes_each_clip_alone_from_where_it_was(sample_dir, tmp_path):
    """A stage that fails on a group of clips (a bug on one clip's frames) runs again on each clip
    alone, from the clip's state before the grouped call, though the stages before the failing
    one had moved it on: the rows are those of one clip at a time (no frame the embedding
    schedule held back is lost or doubled, the identity anchor is not fed twice)."""
    cfg = load_pipeline(SAMPLE_PRESET).replace(decode={"fps": 2, "chunk_frames": 3})
    clips = [c for c in get_source("folder", sample_dir / "videos").scan() if isinstance(c, Clip)]
    processor = ClipProcessor(cfg, tmp_path / "one")
    processor.setup()
    alone = _process(processor, clips)
    pose = next(s for s in processor.stages if s.name == "pose")  # after embed and identity
    original, failed = pose.call_many, []

    def failing_grouped(batches):
        if len(batches) > 1:
            failed.append(len(batches))
            raise RuntimeError("a stage bug on grouped frames")
        return original(batches)

    pose.call_many = failing_grouped
    processor.batch_frames = 40
    processor.run_dir = tmp_path / "many"
    together = _process(processor, clips)
    assert failed and together == alone


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU")
def test_extract_on_cuda_batches_across_clips_and_keeps_every_status(sample_dir, sample_run, tmp_path):
    import duckdb

    from mfhq.extract import extract

    cfg = load_pipeline(SAMPLE_PRESET).replace(run={"device": "cuda", "batch_frames": 64})
    extract("folder", sample_dir / "videos", tmp_path / "run", cfg)
    query = "SELECT clip_id, status FROM read_parquet('{}/clips/*.parquet') ORDER BY clip_id"
    con = duckdb.connect()
    assert con.execute(query.format(tmp_path / "run")).fetchall() == con.execute(query.format(sample_run)).fetchall()


def test_reading_each_clip_ahead_of_its_turn_changes_no_row(sample_dir, tmp_path, monkeypatch):
    import threading

    import mfhq.worker.clip
    import mfhq.worker.clip_open

    cfg = load_pipeline(SAMPLE_PRESET).replace(decode={"fps": 2, "chunk_frames": 4}, run={"decode_ahead": "always"})
    clips = [c for c in get_source("folder", sample_dir / "videos").scan() if isinstance(c, Clip)]
    processor = ClipProcessor(cfg, tmp_path / "in-line")
    processor.setup()
    in_line = {}
    processor.process_many(clips, lambda key, phase: None, lambda clip, faces, row: in_line.__setitem__(clip.key, (faces, row)),
                           read_across=False)

    opened_on = {}  # clip key -> the thread that opened it
    real_open = mfhq.worker.clip_open.open_clip

    def recording(clip, *args):
        opened_on[clip.key] = threading.current_thread().name
        return real_open(clip, *args)

    monkeypatch.setattr(mfhq.worker.clip_open, "open_clip", recording)
    monkeypatch.setattr(mfhq.worker.clip, "open_clip", recording)
    processor.run_dir = tmp_path / "across"
    across = _process(processor, clips)
    for faces, row in in_line.values():
        row.pop("stage_seconds")
    assert across.keys() == in_line.keys() and across == in_line
    # Every clip after a clip that was read whole was opened by the reader thread, ahead.
    read_whole = [c.key for c in clips[:-1] if in_line[c.key][1].get("n_frames_read")]
    assert len(read_whole) >= 3 and clips[0].key in opened_on
    after = {b.key for a, b in zip(clips, clips[1:]) if a.key in read_whole}
    assert all(opened_on[key].startswith("mfhq-decode-ahead") for key in after)
    assert not opened_on[clips[0].key].startswith("mfhq-decode-ahead")


def test_reading_ahead_across_clips_holds_two_chunks_at_most(sample_dir, tmp_path, monkeypatch):
    import threading
    import weakref

    from mfhq.decode import ClipDecoder

    lock, alive, most = threading.Lock(), [0], [0]

    def released():
        with lock:
            alive[0] -= 1

    real_chunks = ClipDecoder.chunks

    def tracked(self, path, indices):
        for chunk in real_chunks(self, path, indices):
            with lock:
                alive[0] += 1
                most[0] = max(most[0], alive[0])
            weakref.finalize(chunk.frames, released)
            yield chunk

    monkeypatch.setattr(ClipDecoder, "chunks", tracked)
    # Chunks of 2 frames: each clip has several, so a first chunk kept past its turn shows.
    cfg = load_pipeline(SAMPLE_PRESET).replace(decode={"fps": 2, "chunk_frames": 2}, run={"decode_ahead": "always"})
    clips = [c for c in get_source("folder", sample_dir / "videos").scan() if isinstance(c, Clip)]
    processor = ClipProcessor(cfg, tmp_path / "run")
    processor.setup()
    done = []
    processor.process_many(clips, lambda key, phase: None, lambda clip, faces, row: done.append(row["status"]))
    assert done.count("ok") >= 3
    assert most[0] == 2  # this clip's last and the next clip's first, or a chunk and the one after it
