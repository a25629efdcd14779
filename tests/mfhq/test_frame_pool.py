"""Chunk arrays come from reused buffers, and never from one that a frame still in use lives in."""
from __future__ import annotations

import numpy as np

from mfhq.frame_pool import FramePool


def test_a_buffer_is_reused_once_nothing_refers_to_it():
    pool = FramePool(keep=2)
    first = pool.array((4, 8, 8, 3))
    first[:] = 1
    address = first.__array_interface__["data"][0]
    del first
    again = pool.array((4, 8, 8, 3))
    assert again.__array_interface__["data"][0] == address  # the same memory, no new pages
    smaller = pool.array((2, 8, 8, 3))  # `again` is alive: another buffer
    assert not np.shares_memory(again, smaller)


def test_a_frame_still_held_keeps_its_chunks_buffer_from_reuse():
    pool = FramePool(keep=3)
    chunk = pool.array((4, 8, 8, 3))
    chunk[:] = 7
    frame = chunk[2]  # a stage keeps one frame (a view), lets go of the chunk
    del chunk
    for _ in range(5):
        other = pool.array((4, 8, 8, 3))
        other[:] = 0
        assert not np.shares_memory(other, frame)
        del other
    assert (frame == 7).all()
    del frame
    assert len(pool._buffers) == 2  # the held one and one reused in turn, not one per request


def test_more_chunks_in_use_than_kept_are_plain_arrays_and_sizes_grow():
    pool = FramePool(keep=1)
    held = pool.array((2, 4, 4, 3))
    loose = pool.array((2, 4, 4, 3))  # the one kept is in use
    assert not np.shares_memory(held, loose) and loose.shape == (2, 4, 4, 3)
    del held, loose
    bigger = pool.array((8, 4, 4, 3))  # a larger chunk (another clip's size) replaces the free one
    assert bigger.shape == (8, 4, 4, 3) and len(pool._buffers) == 1 and pool._buffers[0].size == bigger.size
