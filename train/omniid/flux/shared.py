"""One frozen FLUX lent to several rows of an evaluation, instead of one FLUX per row.

    share = FluxShare()
    parts = share.parts(flow, device, dtype, flux_path)   # built on the first call for this base model
    parts = share.parts(flow, device, dtype, flux_path)   # the same object again
    share.release()                                       # dropped (and the CUDA cache emptied)

FLUX.1-dev's transformer and VAE are ~24 GB in bf16 and frozen in every stage: rows that differ
only in what they train (representation, IP-Adapter, ControlNet) can run on one copy. Rows of
another base model (`omniid.flux.loading.base_model_key` differs) get theirs only after the
previous one is released, so at most one FLUX is held at a time.
"""
from __future__ import annotations

import gc

import torch

from omniid.flux.loading import FluxParts, base_model_key, load_flux


class FluxShare:
    def __init__(self):
        self.key: tuple | None = None
        self._parts: FluxParts | None = None
        self.builds = 0  # how many FLUX were built (one per base model in a grouped evaluation)

    def parts(self, flow, device="cpu", dtype: torch.dtype = torch.float32, flux_path=None) -> FluxParts:
        """This base model's FLUX: the held one when the key matches, else the held one is released
        first and a new one loaded."""
        key = base_model_key(flow, device, dtype, flux_path)
        if self._parts is not None and key == self.key:
            return self._parts
        self.release()
        self._parts, self.key = load_flux(flow, device, dtype, flux_path), key
        self.builds += 1
        return self._parts

    def release(self) -> None:
        """Drop the held FLUX. Its memory comes back once no row holds it any more."""
        self._parts, self.key = None, None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
