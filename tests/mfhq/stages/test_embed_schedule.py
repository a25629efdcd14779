"""The cheaper embedding schedule (embed.every > 1) keeps the same faces as embedding every face.

Clips are rendered like the sample's (its photos, its head motion), with the cases a one-face
track could get wrong: a cut to another person standing in the same place, a short flash of
another person between two stretches of the first (shorter than the schedule's step), and the
person leaving and another arriving where they were.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE_PRESET
from mfhq import sample
from mfhq.config import load_pipeline
from mfhq.worker.clip import ClipProcessor
from mfhq.records import Clip

N = 60  # frames at 25 fps: 12 sampled frames at the preset's 5 fps, one chunk of 16 (or 3 of 5)
A, B = sample._PERSON_A, sample._PERSON_C

# Who is in view per frame: (first frame, end frame, photo or None)
PLANS = {
    "still": [(0, N, A)],
    "cut": [(0, 30, A), (30, N, B)],
    "flash": [(0, 25, A), (25, 35, B), (35, N, A)],
    "leave": [(0, 25, A), (25, 35, None), (35, N, B)],
}


def _render(path: Path, plan) -> None:
    rng = np.random.default_rng(7)
    phases = rng.uniform(0, 2 * np.pi, len(sample._PERIODS))
    frames = []
    for i in range(N):
        photo = next(p for start, end, p in plan if start <= i < end)
        pose = sample._wobble(i, phases, (256.0, 240.0), 190.0, 0.5)  # both people in the same place
        frames.append(sample._Frame([] if photo is None else [(photo, pose, sample._CROP)]))
    sample._write_mp4(path, frames, sample._background(rng, sample.load_photo(A)))


def _who(plan, frame: int):
    return next(p for start, end, p in plan if start <= frame < end)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Clip]:
    folder = tmp_path_factory.mktemp("schedule")
    for name, plan in PLANS.items():
        _render(folder / f"{name}.mp4", plan)
    return [Clip("folder", name, folder / f"{name}.mp4", name) for name in PLANS]


@pytest.fixture(scope="module")
def rows(clips, tmp_path_factory):
    """Face rows per (clip, every) from one processor per schedule."""
    folder = tmp_path_factory.mktemp("runs")
    out = {}
    # (every, chunk frames): "4/5" cuts the 12 sampled frames into chunks of 5, 5 and 2, "4/1"
    # into 12 chunks of one frame, so runs must go on across chunk boundaries.
    for every, chunk in ((1, 16), (1, 5), (4, 16), (4, 5), (4, 2), (4, 1)):
        cfg = load_pipeline(SAMPLE_PRESET).replace(embed={"every": every}, decode={"chunk_frames": chunk})
        processor = ClipProcessor(cfg, folder / f"run-{every}-{chunk}")
        processor.setup()
        for clip in clips:
            faces, row = processor.process(clip)
            assert row["status"] == "ok", row
            key = every if chunk == 16 else f"{every}/{chunk}"
            out[clip.clip_id, key] = sorted(faces, key=lambda r: (r["frame_index"], r["face_index"]))
    return out


SCHEDULES = (4, "4/5", "4/1")  # every 4 in one chunk; in chunks of 5 sampled frames; of 1


@pytest.mark.parametrize("chunked", ["1/5", "4/5", "4/2", "4/1"])
@pytest.mark.parametrize("name", sorted(PLANS))
def test_the_rows_do_not_depend_on_the_chunk_size(rows, name, chunked):
    """Why `decode.chunk_frames` is left out of the run's fingerprint (mfhq.config): each clip's
    state (its person, tracks) runs on across its chunks, and so does the embedding schedule
    (embed.every 4, the sample preset's): the same faces embedded, the same reused, the same
    embeddings and embedding frames, the same kept faces, in chunks of 1, 2, 5 or 16 frames."""
    whole, chunked = rows[name, int(chunked[0])], rows[name, chunked]
    assert whole
    for one, other in zip(whole, chunked, strict=True):
        assert one.keys() == other.keys()
        for column in one:
            assert _same(one[column], other[column]), (name, one["frame_index"], column)


def _same(a, b) -> bool:
    if isinstance(a, (np.ndarray, list)) or isinstance(b, (np.ndarray, list)):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == "f")
    return a == b or (a != a and b != b)  # NaN equals NaN here


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("name", sorted(PLANS))
def test_the_schedule_keeps_the_faces_embedding_every_face_keeps(rows, name, schedule):
    plan = PLANS[name]
    every_face, scheduled = rows[name, 1], rows[name, schedule]
    assert [(r["frame_index"], r["kept"]) for r in scheduled] == [(r["frame_index"], r["kept"]) for r in every_face]
    # ... and those are the first person's faces, every one of them; the other's are all dropped.
    for r in scheduled:
        assert r["kept"] == (_who(plan, r["frame_index"]) == A), (name, r["frame_index"], r["drop_reason"])
        if not r["kept"]:
            assert r["drop_reason"] == "other_identity"


def test_a_run_goes_on_across_chunks_without_restarting(rows):
    """One person all along, 12 sampled frames: the embedder sees sampled frames 0, 4, 8 and 11
    of the run (its first, every 4th, its last) whatever the chunks: in chunks of 5 the faces
    after frame 4 wait for frame 8, those after 8 for the run's end, in the next chunks (4
    embedder calls, not the 6 of runs that restart at every chunk: 0, 4 | 5, 9 | 10, 11)."""
    sampled = [r["frame_index"] for r in rows["still", 4]]
    assert len(sampled) == 12

    def embedded(scheduled):
        return sorted({r["embedding_frame"] for r in scheduled})

    for schedule in SCHEDULES:
        chunked = rows["still", schedule]
        assert [r["frame_index"] for r in chunked] == sampled
        assert embedded(chunked) == [sampled[k] for k in (0, 4, 8, 11)], schedule
        by_frame = {r["frame_index"]: r for r in chunked}
        assert by_frame[sampled[5]]["embedding_frame"] == sampled[4]  # across the boundary of chunks of 5
        assert by_frame[sampled[10]]["embedding_frame"] == sampled[11]  # from the next chunk
        assert by_frame[sampled[10]]["embedding"] == by_frame[sampled[11]]["embedding"]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("name", sorted(PLANS))
def test_a_reused_embedding_comes_from_the_same_person_and_is_recorded(rows, name, schedule):
    plan = PLANS[name]
    scheduled = rows[name, schedule]
    by_frame = {r["frame_index"]: r for r in scheduled}
    reused = [r for r in scheduled if r["embedding_frame"] != r["frame_index"]]
    assert reused, "the schedule saved no embedder call on a clip of long one-face stretches"
    for r in reused:
        assert _who(plan, r["embedding_frame"]) == _who(plan, r["frame_index"]), (name, r["frame_index"])
        assert r["embedding"] == by_frame[r["embedding_frame"]]["embedding"]
    # Embedding every face: each face's own.
    assert all(r["embedding_frame"] == r["frame_index"] for r in rows[name, 1])
    # The saving on these clips: at most about half the faces went through the embedder.
    assert len({r["embedding_frame"] for r in scheduled}) <= 0.6 * len(scheduled)


def test_a_clip_holds_back_at_most_every_minus_one_frames_of_its_own(clips, tmp_path, monkeypatch):
    """The frames whose embeddings wait on a later chunk cost little memory: at most every - 1 of
    a clip (3 here), copied out of their chunk so that they do not keep it alive, and the chunk
    they join is not copied either."""
    from mfhq.stages import detect

    cfg = load_pipeline(SAMPLE_PRESET).replace(decode={"chunk_frames": 1})
    processor = ClipProcessor(cfg, tmp_path)
    processor.setup()
    embed = next(s for s in processor.stages if s.name == "embed")
    original, held, joined = embed.call_many, [], []

    def watching(batches):
        chunks = [b.frames for b in batches]
        out = original(batches)
        for batch, chunk, kept in zip(batches, chunks, out):
            if batch.state.embed_held is not None:
                held.append(len(batch.state.embed_held.frames))
                assert not np.shares_memory(np.asarray(batch.state.embed_held.frames), chunk)
            if len(kept.frames) > 1:  # a chunk of one frame joined by held ones
                joined.append(np.shares_memory(kept.frames[len(kept.frames) - 1], chunk))
        return out

    monkeypatch.setattr(embed, "call_many", watching)
    faces, row = processor.process(clips[list(PLANS).index("still")])
    assert row["status"] == "ok" and len(faces) == 12
    assert held and max(held) == cfg.embed.every - 1
    assert joined and all(joined)
