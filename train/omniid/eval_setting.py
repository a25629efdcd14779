"""Which setting each omniid-eval row was generated in, and the hook that gives a ControlNet row
its targets' landmarks. Generators are duck-typed here (no import of them), so that
`omniid.evaluate` names no generator class.

    DECODER_ONLY   the flow stage's decoder: FLUX + adapter, no pose input (pose is not conditioned)
    CONTROLNET     Table 1's setting as we build it: the adapter stage's ControlNet fed each
                   target's landmark image, with its adapter (omniid.controlnet_generation)
    COPY           the copy-input calibration row: an input photo, nothing generated
"""
from __future__ import annotations

from pathlib import Path

DECODER_ONLY = "decoder-only"
CONTROLNET = "Table 1-like, ControlNet"
COPY = "copy of an input"


def setting_of(generator) -> str:
    """A generator's `setting`, DECODER_ONLY for one that declares none (a flow-stage generator)."""
    return getattr(generator, "setting", DECODER_ONLY)


def row_settings(generators: dict, copy_label: str | None) -> dict[str, str]:
    """{table row label: its setting}, the copy row's included when it is there."""
    settings = {label: setting_of(gen) for label, gen in generators.items()}
    return {**settings, copy_label: COPY} if copy_label else settings


def bind_targets(generators: dict, manifest: str | Path, targets: list[Path]) -> None:
    """Tell each generator that conditions on the targets (a ControlNet's landmark images) which
    targets the next `generate` calls are for; the others ignore it."""
    for gen in generators.values():
        if hasattr(gen, "bind_targets"):
            gen.bind_targets(manifest, targets)
