"""Curation: runs -> identities (merge/dedup) -> 8 pose-spread faces each -> train/test manifests."""
from mfhq.curate.build import cluster_sample, resplit
from mfhq.curate.runs import RunError
from mfhq.manifest.io import SchemaVersionError
from mfhq.manifest.schema import ManifestError

# The errors a user can cause (bad folder, old files, bad option); the CLI prints them.
CurateError = (RunError, SchemaVersionError, ManifestError, ValueError)

__all__ = ["cluster_sample", "resplit", "CurateError"]
