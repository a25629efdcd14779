"""Executors schedule shards; stages know nothing of processes (see executors/base.py)."""
from mfhq.executors.base import DiskFull, Executor, ExecutorError, executor_names, get_executor, register_executor

__all__ = ["DiskFull", "Executor", "ExecutorError", "executor_names", "get_executor", "register_executor"]
