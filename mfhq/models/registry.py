"""Backends per task, chosen by name from one table (not an if/elif chain).

The table names each backend's class as "module:Class"; a module is imported only when one of
its backends is asked for, so its library loads only for those who use it, and the backends
never import this module (see base.py for what a backend of each task provides). A name of the
form `module:Class` is a backend of your own (a Backend subclass of the task), as `decode.backend`
takes a reader of your own.
"""
from __future__ import annotations

import importlib

from mfhq.models.base import TASKS, Backend, BackendError

BACKENDS: dict[str, dict[str, str]] = {
    "detector": {
        "scrfd": "mfhq.models.insightface_onnx:ScrfdDetector",
        "yunet": "mfhq.models.yunet:YuNetDetector",
        "yunet-dlib68": "mfhq.models.yunet:YuNetDlib68Detector",
    },
    "embedder": {
        "arcface": "mfhq.models.insightface_onnx:ArcFaceEmbedder",
        "sface": "mfhq.models.sface:SFaceEmbedder",
        "dlib-resnet": "mfhq.models.dlib_resnet:DlibResNetEmbedder",
    },
    "pose": {
        "6drepnet": "mfhq.models.sixdrep_pose:SixDRepNetPose",
        "pnp5": "mfhq.models.pnp_pose:PnPPose",
        "pnp68": "mfhq.models.pnp_pose:PnP68Pose",
    },
    "quality": {
        "brisque": "mfhq.models.brisque_iqa:BrisqueQuality",
        "topiq-nr-face": "mfhq.models.topiq_iqa:TopiqFaceQuality",
    },
    "parsing": {
        "dlib68-hull": "mfhq.models.dlib_hull:DlibHullParsing",
        "facexlib-bisenet": "mfhq.models.facexlib_parsing:BiSeNetParsing",
        "facexlib-parsenet": "mfhq.models.facexlib_parsing:ParseNetParsing",
    },
}


def backend_names(task: str) -> list[str]:
    return sorted(BACKENDS[task])


def backend_class(task: str, name: str) -> type[Backend]:
    if task not in BACKENDS:
        raise BackendError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if ":" in name and name not in BACKENDS[task]:
        return _own_class(task, name)
    if name not in BACKENDS[task]:
        raise BackendError(f"unknown {task} backend {name!r}; available: {', '.join(sorted(BACKENDS[task]))}")
    module, cls = BACKENDS[task][name].split(":")
    return getattr(importlib.import_module(module), cls)


def _own_class(task: str, spec: str) -> type[Backend]:
    module, _, attr = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise BackendError(f"{task} backend {spec!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend) and cls.task == task):
        raise BackendError(f"{task} backend {spec!r} is not a {task} Backend (mfhq.models.base)")
    return cls


def create_backend(task: str, name: str, **kwargs) -> Backend:
    return backend_class(task, name)(**kwargs)


def all_backends() -> list[type[Backend]]:
    """Every backend class, by task then name."""
    return [backend_class(task, name) for task in TASKS for name in sorted(BACKENDS[task])]
