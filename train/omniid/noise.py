"""The objectives' randomness: one generator for a batch, or each item's own stream.

A loader's items carry `item_key` (`omniid.draws.item_key`, a function of the seed and the item's
draw index alone). Where a batch has them, each item's random numbers (MTD's masks; the flow
stages' posterior sample, t and noise) come from a CPU generator of its own key, its R rows one
after another, so an item draws the same whichever batch, micro-batch (`--grad-accum`), process
(DDP) or device reads it: a step is the same for any split of its items. A batch made by hand
has no keys and draws from the one generator it is given (`Draws(generator)`).
"""
from __future__ import annotations

import torch


class Draws:
    """rand/randn of shape [B * rows, ...]: from `generator`, or with `keys` (one per item) each
    item's rows from its own CPU generator, drawn in float32 and then moved."""

    def __init__(self, generator: torch.Generator | None = None, keys: list[int] | None = None, rows: int = 1):
        self.generator, self.rows = generator, rows
        self.items = None if keys is None else [torch.Generator().manual_seed(int(key)) for key in keys]

    @property
    def per_item(self) -> bool:
        return self.items is not None

    @classmethod
    def wrap(cls, source: "torch.Generator | Draws | None") -> "Draws":
        """`source` as draws: itself, or a generator's (a caller may be given either)."""
        return source if isinstance(source, Draws) else cls(source)

    @classmethod
    def of(cls, batch: dict, rows: int, generator: torch.Generator | None) -> "Draws":
        """The batch's items' own streams where a loader made it (`item_keys`), else `generator`'s."""
        return cls(generator, batch.get("item_keys"), rows)

    def rand(self, shape, device=None, dtype=None) -> torch.Tensor:
        return self._draw(torch.rand, shape, device, dtype)

    def randn(self, shape, device=None, dtype=None) -> torch.Tensor:
        return self._draw(torch.randn, shape, device, dtype)

    def _draw(self, draw, shape, device, dtype) -> torch.Tensor:
        shape = tuple(shape)
        if self.items is None:
            return draw(shape, generator=self.generator, device=device, dtype=dtype)
        if shape[0] != len(self.items) * self.rows:
            raise ValueError(f"{shape[0]} rows drawn for {len(self.items)} items of {self.rows} rows each")
        parts = [draw((self.rows, *shape[1:]), generator=g) for g in self.items]
        return torch.cat(parts).to(device=device, dtype=dtype)
