"""Executors run the per-clip pipeline over many clips; stages know nothing of processes."""
from mfhq.executors.local import LocalExecutor, ClipOutcome, ExecutorError

EXECUTORS = {"local": LocalExecutor}

__all__ = ["EXECUTORS", "LocalExecutor", "ClipOutcome", "ExecutorError"]
