"""Curation: runs -> identities (merge/dedup) -> 8 pose-spread faces each -> train/test manifests."""
from mfhq.curate.build import cluster_sample
from mfhq.curate.resplit import resplit
from mfhq.manifest.views import RunError

__all__ = ["cluster_sample", "resplit", "RunError"]
