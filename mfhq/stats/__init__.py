"""`mfhq stats`: DuckDB named views over runs and manifests; tables, plots, an HTML report."""
from mfhq.stats.report import run_query, write_report
from mfhq.stats.views import StatsError, connect_stats

__all__ = ["StatsError", "connect_stats", "run_query", "write_report"]
