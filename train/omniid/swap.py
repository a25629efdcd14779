"""The identity-swap check: does a decoder use the representation it is given?

A decoder that learned to ignore its conditioning (the prompt or the visible tokens carry the loss)
trains with finite, falling losses all the same. The check asks the decoder one question: on the
same batch, the same masks, timesteps and noise, is the loss lower with each identity's own
representation than with another identity's? Another identity's is a fixed derangement of the
batch (a permutation without fixed points, so no row keeps its own):

    swap_gap = loss_swapped - loss_own          swap_gap_rel = swap_gap / loss_own

`own_and_swapped` computes both losses of one batch with an objective's `represent(batch)` and
`forward(batch, generator, tokens=...)`; `evaluate` runs it over the eval batches, `SwapGap`
holds the averages and `eval_record` logs them. The same derangement pairs identities in
`omniid-eval`, whose margins get a bootstrap interval over identities (`bootstrap_interval`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)
SWAP_FIELDS = ("loss", "loss_swapped", "swap_gap", "swap_gap_rel", "swap_loss_own", "swap_batches", "batches")


def derangement(n: int, seed: int = 0) -> list[int]:
    """A seeded permutation of range(n) with no fixed point (Sattolo's algorithm: one n-cycle),
    so that row i takes the representation of row order[i] != i. Needs n >= 2."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    order = list(range(n))
    rng = np.random.default_rng([seed, n])
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))  # j < i: every element moves
        order[i], order[j] = order[j], order[i]
    return order


def own_and_swapped(model, batch: dict, generator: Callable[[], torch.Generator | None],
                    order: Sequence[int] | None) -> tuple[float, float | None]:
    """The loss of `batch` with each row's own representation, and with row order[i]'s in row i
    (None when `order` is None). `generator()` is called once per loss and must return a fresh
    generator in the same state, so both losses draw the same masks, timesteps and noise."""
    tokens = model.represent(batch)
    own = model(batch, generator(), tokens=tokens).loss.item()
    if order is None:
        return own, None
    swapped = tokens[torch.as_tensor(list(order), device=tokens.device)]
    return own, model(batch, generator(), tokens=swapped).loss.item()


@torch.no_grad()
def evaluate(model, batches: Iterable[dict], generator_for: Callable[..., torch.Generator | None], seed: int,
             autocast: bool = False) -> "SwapGap":
    """Own and swapped losses of every batch (already on the model's device), batch i's randomness
    from `generator_for(i)`, the derangement seeded by `seed`; a batch of one identity has no pair."""
    was_training = model.training
    model.eval()
    own, swapped = [], []
    for i, batch in enumerate(batches):
        n = len(batch["identity"])
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            o, s = own_and_swapped(model, batch, partial(generator_for, i), derangement(n, seed) if n > 1 else None)
        own.append(o)
        swapped.append(s)
    model.train(was_training)
    return SwapGap.of(own, swapped)


@dataclass(frozen=True)
class SwapGap:
    """An evaluation's mean own loss over its `batches`, and the swap check over the `swap_batches`
    that had two identities or more (None where none had): the own loss of those same batches,
    their swapped loss and the gap between the two. Both terms of the gap are over the same
    batches; `loss` is too when every batch has a pair (as omniid-train's eval sets do)."""
    loss: float
    loss_swapped: float | None
    swap_gap: float | None
    swap_gap_rel: float | None
    swap_loss_own: float | None
    swap_batches: int
    batches: int

    @classmethod
    def of(cls, own: list[float], swapped: list[float | None]) -> "SwapGap":
        if len(own) != len(swapped):
            raise ValueError(f"{len(own)} own losses against {len(swapped)} swapped ones: one each a batch")
        loss = float(np.mean(own))
        pairs = [(o, s) for o, s in zip(own, swapped) if s is not None]
        if not pairs:
            return cls(loss, None, None, None, None, 0, len(own))
        paired_own, paired_swapped = (float(np.mean(v)) for v in zip(*pairs))
        gap = paired_swapped - paired_own
        return cls(loss, paired_swapped, gap, gap / max(abs(paired_own), 1e-12), paired_own, len(pairs), len(own))

    def record(self, prefix: str) -> dict:
        """{prefix}_loss, {prefix}_loss_swapped, {prefix}_swap_gap, {prefix}_swap_gap_rel."""
        return {f"{prefix}_{field}": getattr(self, field) for field in SWAP_FIELDS}

    def near_zero(self, min_rel: float) -> bool:
        """True when the gap was measured and is under `min_rel` of the own loss (negative too)."""
        return self.swap_gap_rel is not None and self.swap_gap_rel < min_rel

    def describe(self) -> str:
        if self.swap_gap is None:
            return f"loss {self.loss:.5f} (swap gap: no batch with two identities)"
        swap = (f"swapped {self.loss_swapped:.5f} swap gap {self.swap_gap:+.5f} "
                f"({100 * self.swap_gap_rel:+.2f}%)")
        if self.swap_batches == self.batches:
            return f"loss {self.loss:.5f} {swap}"
        # the own loss the gap is taken from is not `loss`: say which batches each is over
        return (f"loss {self.loss:.5f} over {self.batches} batches; on the {self.swap_batches} with two identities "
                f"or more: own {self.swap_loss_own:.5f} {swap}")


def bootstrap_interval(values: Sequence[float], resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` (one per identity) and the percentile interval of
    the means of `resamples` resamples with replacement, drawn from a generator seeded by `seed`.
    NaN for no values."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if not len(values):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(values.mean()), float(low), float(high)


def eval_record(results: dict[str, SwapGap], step: int, stage: str, warmup_steps: int, min_rel: float) -> dict:
    """The log record of one evaluation's sets ({name}_loss, ..., see `SwapGap.record`), each set
    logged; from `warmup_steps` on, a set whose gap is near zero (`SwapGap.near_zero(min_rel)`)
    is a warning naming the stage, the step and the set, and is marked {name}_swap_warning."""
    record = {"step": step}
    for name, result in results.items():
        record.update(result.record(name))
        log.info("step %d %s %s", step, name, result.describe())
        if step >= warmup_steps and result.near_zero(min_rel):
            record[f"{name}_swap_warning"] = True
            log.warning("%s stage, step %d: the %s identity-swap gap is under %.2f%% of the loss (%s): the decoder "
                        "may be ignoring the representation", stage, step, name, 100 * min_rel, result.describe())
    return record
