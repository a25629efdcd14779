"""What every objective returns; the objectives import it from here, never from the registry
(`omniid.objectives`) that imports them."""
from __future__ import annotations

from typing import NamedTuple

import torch


class ObjectiveOutput(NamedTuple):
    loss: torch.Tensor            # scalar, the mean over the batch's targets
    pred: torch.Tensor | None     # the decoder's prediction (MTD: patches; flow: velocity)
    aux: dict                     # anything else worth a look (masks, timesteps, targets)
