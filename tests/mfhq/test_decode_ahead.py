"""Decode-ahead: a clip's next chunk is read in a thread while the models work on the current one.
The chunks and errors must be those of reading in line, with two chunks held at most."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import weakref

import numpy as np
import pytest

from conftest import REPO
from mfhq.config import ConfigError, DecodeConfig, PipelineConfig, load_pipeline
from mfhq.decode import ClipDecoder, DecodeError, DecodedChunk, sample_indices
from mfhq.decode_ahead import DecodeAhead, reader_thread


class Frames:
    """A chunk's stand-in whose lifetime the tests can watch."""


def test_the_same_chunks_as_reading_in_line(sample_dir):
    path = sample_dir / "videos" / "astronaut_motion.mp4"
    cfg = DecodeConfig(fps=5, chunk_frames=3)

    def read(ahead: bool) -> list[DecodedChunk]:
        decoder = ClipDecoder(cfg)
        info = decoder.open(path)
        chunks = decoder.chunks(path, sample_indices(info, cfg, None, None))
        if ahead:
            chunks = DecodeAhead(chunks)
        out = list(chunks)
        if ahead:
            chunks.close()
        decoder.close()
        return out

    in_line, ahead = read(False), read(True)
    assert len(in_line) > 2 and [c.indices for c in ahead] == [c.indices for c in in_line]
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(ahead, in_line))


def test_the_next_chunk_is_read_while_the_caller_holds_this_one():
    second_read = threading.Event()

    def chunks():
        yield DecodedChunk([0], Frames())
        second_read.set()
        yield DecodedChunk([1], Frames())

    reads = []
    ahead = DecodeAhead(chunks(), reads.append)
    first = next(ahead)
    # Read in line, the second chunk would only be read when asked for: this would time out.
    assert second_read.wait(10), "the next chunk was not read ahead"
    assert first.indices == [0] and next(ahead).indices == [1]
    with pytest.raises(StopIteration):
        next(ahead)
    ahead.close()
    assert reads == [True, False] * 3  # two chunks and the read that found the end


def test_a_read_error_comes_at_its_own_chunk():
    def chunks():
        yield DecodedChunk([0], Frames())
        yield DecodedChunk([1], Frames())
        raise DecodeError("clip.mp4: reading frames 2..2 failed")

    ahead = DecodeAhead(chunks())
    assert [next(ahead).indices, next(ahead).indices] == [[0], [1]]
    with pytest.raises(DecodeError, match="clip.mp4: reading frames 2..2"):
        next(ahead)
    ahead.close()


def test_at_most_two_chunks_are_held():
    alive, most = [0], [0]

    def released():
        alive[0] -= 1

    def chunks():
        for i in range(8):
            frames = Frames()
            alive[0] += 1
            most[0] = max(most[0], alive[0])
            weakref.finalize(frames, released)
            yield DecodedChunk([i], frames)
            del frames

    ahead = DecodeAhead(chunks())
    for chunk in ahead:
        time.sleep(0.01)  # the models' work: the read ahead finishes meanwhile
        chunk = None  # noqa: F841 - as the pipeline lets go of a chunk before the next
    ahead.close()
    assert most[0] == 2


def test_close_waits_for_the_read_in_flight():
    started, finished = threading.Event(), threading.Event()

    def chunks():
        yield DecodedChunk([0], Frames())
        started.set()
        time.sleep(0.3)  # a slow read: the container must not be closed under it
        finished.set()
        yield DecodedChunk([1], Frames())

    ahead = DecodeAhead(chunks())
    next(ahead)
    assert started.wait(10)
    ahead.close()  # (a read not yet begun is dropped instead)
    assert finished.is_set()


def test_auto_reads_ahead_only_with_a_core_to_spare(tmp_path):
    run = PipelineConfig().run
    assert run.decode_ahead == "auto"
    def reads(cores, **options):
        return PipelineConfig().replace(run=options).run.reads_ahead(cores)

    assert reads(2, workers=1) and not reads(2, workers=2) and reads(16, workers=8)
    assert reads(2, workers=2, device="cuda")  # the models run on the GPU; the CPU mostly waits
    assert not reads(64, executor="ray") and reads(64, executor="ray", num_cpus=2)  # an actor's own CPUs
    assert reads(2, workers=2, decode_ahead="always") and not reads(16, workers=1, decode_ahead="never")
    preset = tmp_path / "p.yaml"
    preset.write_text("run:\n  decode_ahead: yes\n")  # YAML reads `yes` as true
    with pytest.raises(ConfigError, match=r"p.yaml.*run.decode_ahead"):
        load_pipeline(preset)
    preset.write_text("run:\n  decode_ahead: sometimes\n")
    with pytest.raises(ConfigError, match=r"p.yaml.*decode_ahead.*one of auto, always, never"):
        load_pipeline(preset)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is a Linux call")
def test_auto_counts_the_cores_this_process_may_use():
    # A job pinned to one core (Slurm, taskset) on a larger machine has no core to spare.
    script = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
              "from mfhq.config import PipelineConfig, usable_cores; "
              "print(usable_cores(), PipelineConfig().replace(run={'workers': 1}).run.reads_ahead())")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "False"]


def test_a_shared_reader_thread_goes_on_to_the_next_clip_once_this_one_is_read():
    # The worker's one reader thread: after a clip's last chunk it runs `on_end` (the next
    # clip's opening is queued there), and closing this clip never waits for that next work.
    pool = reader_thread()
    next_clip_may_finish, ends = threading.Event(), []

    def next_clip_opening():
        next_clip_may_finish.wait(10)
        return "opened"

    def on_end():
        ends.append(threading.current_thread().name)
        ends.append(pool.submit(next_clip_opening))

    def chunks():
        yield DecodedChunk([0], Frames())
        yield DecodedChunk([1], Frames())

    ahead = DecodeAhead(chunks(), pool=pool, on_end=on_end)
    assert [c.indices for c in ahead] == [[0], [1]]
    ahead.close()  # returns although the next clip's opening still runs on the thread
    name, opening = ends
    assert name.startswith("mfhq-decode-ahead") and not opening.done()
    next_clip_may_finish.set()
    assert opening.result(10) == "opened"
    pool.shutdown()


def test_no_next_clip_is_read_after_a_clip_that_failed_to_read():
    ended = []

    def chunks():
        yield DecodedChunk([0], Frames())
        raise DecodeError("clip.mp4: reading frames 1..1 failed")

    pool = reader_thread()
    ahead = DecodeAhead(chunks(), pool=pool, on_end=lambda: ended.append(True))
    next(ahead)
    with pytest.raises(DecodeError):
        next(ahead)
    ahead.close()
    pool.shutdown()
    assert not ended  # the clip fails where it would in line; nothing more is read for it
