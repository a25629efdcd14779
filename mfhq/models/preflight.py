"""Before a run: every backend the pipeline names exists, and all their weights are here.

Done once in the main process, so that an unknown backend or a missing file fails at once with
one message (listing every missing file of every backend), not once per worker. The result,
backend and weight hash per task, goes into run.json and decides whether a resume may go on.
"""
from __future__ import annotations

from mfhq.models.base import Backend
from mfhq.models.registry import create_backend
from mfhq.models.weights import resolve


def pipeline_backends(cfg) -> dict[str, str]:
    """task -> backend name, from a PipelineConfig."""
    return {"detector": cfg.detect.backend, "embedder": cfg.embed.backend, "pose": cfg.pose.backend,
            "quality": cfg.quality.backend, "parsing": cfg.parsing.backend}


def check_pipeline(cfg, models_dir=None) -> dict[str, str]:
    """task -> 'backend@hash12[+...]'. Raises BackendError or one WeightsMissing / WeightsCorrupt."""
    backends: dict[str, Backend] = {
        task: create_backend(task, name, models_dir=models_dir, device=cfg.run.device)
        for task, name in pipeline_backends(cfg).items()
    }
    files = list({wf.name: wf for b in backends.values() for wf in b.weight_files}.values())
    owners: dict[str, list[str]] = {}
    for b in backends.values():
        for wf in b.weight_files:
            owners.setdefault(wf.name, []).append(b.name)
    paths = resolve(files, models_dir, owners)
    for b in backends.values():  # what setup() would resolve, so that `provenance` reads as after a load
        b.paths = {wf.name: paths[wf.name] for wf in b.weight_files}
    return {task: b.provenance for task, b in backends.items()}
