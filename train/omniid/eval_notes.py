"""What omniid-eval's table and sheets must say about the rows beside the numbers: random weights
(a tiny preset measures nothing about quality), rows conditioned on a model that also scores them
(the `arcface` baselines on their identity model), and the protocol as actually run."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omniid.eval_setting import setting_of


@dataclass(frozen=True)
class RowInfo:
    """What the table, settings.json and the export say of a generated row, kept once its models
    are released (omniid-eval builds rows one FLUX at a time): nothing here holds a tensor."""
    preset: object
    setting: str
    settings: dict
    prompt: str
    folder: Path
    conditioning: list[str]

    @classmethod
    def of(cls, generator, protocol) -> "RowInfo":
        """Its settings name the protocol's guidance and scale as used, beside the trained ones."""
        return cls(generator.preset, setting_of(generator), generator.settings_used(protocol.guidance, protocol.scale),
                   generator.prompt, Path(generator.folder), conditioning_models(generator))


def random_weights(generators: dict) -> str | None:
    """A warning line when any row (a generator or its RowInfo) was generated with random-initialised
    FLUX (a tiny preset)."""
    presets = sorted({gen.preset.name for gen in generators.values()
                      if getattr(getattr(getattr(gen, "preset", None), "flow", None), "transformer", None) is not None})
    if not presets:
        return None
    return (f"RANDOM WEIGHTS: preset {', '.join(presets)} generates with a random-initialised FLUX transformer and "
            "VAE (not FLUX.1-dev); these numbers and images measure nothing about quality.")


def conditioning_models(generator) -> list[str]:
    """The face-recognition models a generator's representation is conditioned on (its frozen
    identity model, named as in mfhq's registry: `sface`, `arcface`...); [] for Omni-ID and CLIP."""
    representation = getattr(getattr(generator, "objective", None), "representation", None)
    names = set()
    for module in representation.modules() if representation is not None else ():
        name = getattr(getattr(module, "identity", None), "name", None)
        if isinstance(name, str):
            names.add(name)
    return sorted(names)


def conditioned(conditioning: dict[str, list[str]], recognisers: list[str]) -> dict[str, list[str]]:
    """conditioning: label -> its conditioning models -> label -> the scoring recognisers among
    them (only labels with any)."""
    out = {}
    for label, models in conditioning.items():
        same = [r for r in recognisers if r in models]
        if same:
            out[label] = same
    return out


def conditioned_line(marks: dict[str, list[str]], mark: str,
                     advice: str = "read the other recognisers' columns") -> list[str]:
    return [f"{mark} {label} is conditioned on {', '.join(models)}, which also scores its {mark} columns: there its "
            f"ID similarity is not an independent measurement; {advice}."
            for label, models in marks.items()]
