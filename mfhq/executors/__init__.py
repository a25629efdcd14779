"""Executors schedule shards; stages know nothing of processes (see executors/base.py)."""
from mfhq.executors.base import Executor, ExecutorError, executor_names, get_executor, register_executor

__all__ = ["Executor", "ExecutorError", "executor_names", "get_executor", "register_executor"]
