"""One process per GPU under torchrun (DDP; gloo on CPU): set-up, wrapping and the collectives the
engine needs. With one process every helper is a no-op."""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


# Rank 0 alone writes the flow stage's prompt cache (T5-XXL on one GPU) and each checkpoint (about
# 14 GB for a flow run) while the other ranks wait in a collective: NCCL's default 10 minutes can
# run out on a slow disk. Ours: 60 minutes, or $OMNIID_PG_TIMEOUT_MIN.
PG_TIMEOUT_ENV = "OMNIID_PG_TIMEOUT_MIN"
PG_TIMEOUT_MIN = 60


def pg_timeout() -> timedelta:
    return timedelta(minutes=float(os.environ.get(PG_TIMEOUT_ENV, PG_TIMEOUT_MIN)))


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world, device) of this process; the process group is started once when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=pg_timeout())
    return (dist.get_rank() if world > 1 else 0), world, device


def teardown_distributed() -> None:
    """End the process group before the interpreter does: a gloo group left to interpreter
    shutdown can abort a rank ("terminate called without an active exception") after its work is
    done, failing the whole torchrun job."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model, device: torch.device, world: int):
    """DDP around the objective when world > 1 (the model itself otherwise)."""
    if world == 1:
        return model
    # frozen parts (FLUX, the VAE) are neither synchronised nor broadcast: every rank loads them
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    frozen += [n for n, _ in model.named_buffers()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, frozen)
    # gradients live in DDP's buckets instead of a second copy: about a model's worth of
    # trainable-gradient memory saved per GPU
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   gradient_as_bucket_view=True)


def mean_over_ranks(value: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of a tensor over every rank (in place), so that all ranks see the global value."""
    if world > 1:
        dist.all_reduce(value)
        value /= world
    return value


def gather(value, world: int) -> list:
    """Every rank's `value`, in rank order (a picklable object)."""
    if world == 1:
        return [value]
    values = [None] * world
    dist.all_gather_object(values, value)
    return values


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()
