"""Printed figures against their labels (the labels audit): the trainer's and the GPU scripts'
memory in GB (`gpu_mem_gb`, `peak_gb`) is 10^9 bytes, as the memory arithmetic beside it in
docs/train.md."""
from __future__ import annotations

import pytest
import torch

from omniid.run_progress import gigabytes, peak_gpu_gb


def test_memory_in_gb_is_ten_to_the_ninth_bytes_as_the_arithmetic_it_is_read_beside():
    # docs/train.md: the MTD stage's 0.79 B trainable parameters x 16 bytes are 12.6 GB; a peak
    # in 2^30-byte units read 11.8 for the same bytes
    assert round(gigabytes(790_000_000 * 16), 1) == 12.6
    assert peak_gpu_gb(torch.device("cpu")) is None  # no CUDA peak to read off a CUDA device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_cuda_peak_is_the_allocator_peak_in_gb():
    device = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats(device)
    block = torch.empty(10**9, dtype=torch.uint8, device=device)
    assert peak_gpu_gb(device) == pytest.approx(torch.cuda.max_memory_allocated(device) / 1e9)
    assert peak_gpu_gb(device) >= 1.0
    del block

