"""omniid-eval's generated rows: which checkpoint each is, under which label, and on which FLUX.

    rows = EvalRows(checkpoints, controlnets, device, flux_path, clip_weights, models_dir)  # read, nothing built
    check_weights(rows.check_weights, ...)  # every row's frozen weights, with the caller's own (omniid.errors)
    rows.labels                          # table row labels, in the order of the command line
    for generators in rows.groups():     # {label: generator} of one base model at a time
        ...                              # (omniid.evaluate generates every identity with them)

FLUX is frozen in every stage, so the rows that share a base model (`omniid.flux.loading.
base_model_key`: the same FLUX folder or random config, device and dtype) share one FLUX
(`omniid.flux.shared.FluxShare`); each row builds only what it trained (its representation,
IP-Adapter and, for `--controlnet`, its ControlNet), attached to that FLUX for each sampling call.
Rows of another base model come in a later group, after the previous group's generators and
FLUX are released, so one FLUX is held at a time. On the paper preset four rows hold one
FLUX.1-dev (~24 GB in bf16) instead of four (~96 GB).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from omniid.checkpoint import run_of
from omniid.controlnet_generation import ControlNetGenerator
from omniid.command_facts import frozen_facts
from omniid.errors import FlagError
from omniid.flux.loading import base_model_key, flux_dtype
from omniid.flux.shared import FluxShare
from omniid.generation import OmniIDGenerator

log = logging.getLogger(__name__)


@dataclass
class RowSpec:
    label: str
    path: str
    kind: type          # OmniIDGenerator (decoder-only) or ControlNetGenerator (Table 1-like)
    preset: object      # as the run trained it
    base: tuple         # its FLUX's base_model_key
    representation: str
    state: dict         # its state.json (what it trained on: omniid.eval_seen)


def _labels(rows: list[tuple[str, bool, object, str, str]]) -> list[str]:
    """rows: (representation, controlnet, step, run folder name, path), in command-line order ->
    unique table labels. A name no other row shares stays as it is ("omniid", "omniid
    (ControlNet)"); rows that share one are each labelled with their step, all of them, not only
    the later ones ("omniid (step 2)", "omniid (step 4)"), then with their run where steps tie too,
    and with their path where runs' names tie as well."""
    def base(row) -> str:
        return f"{row[0]} (ControlNet)" if row[1] else row[0]

    labels: list[str] = []
    for row in rows:
        name, controlnet, step, run, path = row
        if sum(base(other) == base(row) for other in rows) == 1:
            labels.append(base(row))
            continue
        inner = "ControlNet, " if controlnet else ""
        tied = sum(base(other) == base(row) and other[2] == step for other in rows) > 1
        label = f"{name} ({inner}{run}, step {step})" if tied else f"{name} ({inner}step {step})"
        label = f"{name} ({inner}{path}, step {step})" if label in labels else label
        while label in labels:  # the same checkpoint given twice: still one row each
            label += "'"
        labels.append(label)
    return labels


def _refuse_one_checkpoint_twice(read: list[tuple]) -> None:
    """One step folder given twice (twice as typed, or a run folder and its checkpoints/latest): every
    flag applies to every row, so its row would be generated, scored and shown twice, as two models."""
    given: dict[Path, str] = {}
    for kind, path, folder, *_ in read:
        where = Path(folder).resolve()
        if where in given:
            option = "--controlnet" if kind is ControlNetGenerator else "--checkpoint"
            raise FlagError(f"{option} {path}: the checkpoint {given[where]} given again (both are {where}); its row "
                            "would be generated and scored twice, as if two models. Give each checkpoint once")
        given[where] = path


class EvalRows:
    def __init__(self, checkpoints: Sequence[str], controlnets: Sequence[str], device: str = "cpu", flux_path=None,
                 clip_weights=None, models_dir=None):
        """Every checkpoint read and checked (missing files, wrong stage) before any model loads;
        its frozen weights are `check_weights`'s. models_dir: mfhq's weights folder (a baseline's
        identity model)."""
        self.device, self.flux_path, self.clip_weights, self.models_dir = device, flux_path, clip_weights, models_dir
        self.specs: list[RowSpec] = []
        self.share = FluxShare()
        read = [(kind, str(path), *kind.read(path)) for kind, paths in ((OmniIDGenerator, checkpoints),
                                                                       (ControlNetGenerator, controlnets))
                for path in paths]
        _refuse_one_checkpoint_twice(read)
        labels = _labels([(state.get("representation", "omniid"), kind is ControlNetGenerator,
                           state.get("step", folder.name), run_of(folder).name, path)
                          for kind, path, folder, state, _ in read])
        for label, (kind, path, _, state, preset) in zip(labels, read):
            base = base_model_key(preset.flow, device, flux_dtype(preset.flow, device), flux_path)
            self.specs.append(RowSpec(label, path, kind, preset, base, state.get("representation", "omniid"), state))

    def check_weights(self) -> None:
        """Every row's frozen weights (FLUX folder, a baseline's CLIP file and identity model) found
        and readable, before any model loads (a row's loader compares them with its record);
        each kind of missing one named at once, not after other rows were generated."""
        for spec in self.specs:
            frozen_facts(spec.preset, spec.representation, True, self.clip_weights, self.flux_path, self.models_dir)

    @property
    def labels(self) -> list[str]:
        return [spec.label for spec in self.specs]

    @property
    def preset(self):
        """The first row's preset (it picks the default metric pipeline), None without rows."""
        return self.specs[0].preset if self.specs else None

    def bases(self) -> list[tuple]:
        """The distinct base models, in the order their first row comes."""
        return list(dict.fromkeys(spec.base for spec in self.specs))

    def groups(self) -> Iterator[dict]:
        """{label: generator} per base model, built on one shared FLUX; everything of a group is
        released before the next group's FLUX loads."""
        bases = self.bases()
        for n, base in enumerate(bases):
            specs = [spec for spec in self.specs if spec.base == base]
            if len(bases) > 1:
                log.info("FLUX %d of %d (%s): rows %s", n + 1, len(bases), base[0], ", ".join(s.label for s in specs))
            generators = {spec.label: spec.kind.from_checkpoint(spec.path, self.device, self.flux_path,
                                                                self.clip_weights, models_dir=self.models_dir,
                                                                flux=self.share)
                          for spec in specs}
            try:
                yield generators
            finally:
                generators.clear()
                self.share.release()
