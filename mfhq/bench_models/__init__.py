"""`mfhq bench-models`: each stage's model alone, timed on inputs of its real shape (run.py)."""
from mfhq.bench_models.report import format_table
from mfhq.bench_models.run import RANDOM, bench_models

__all__ = ["RANDOM", "bench_models", "format_table"]
