"""Curation: runs -> identities (merge/dedup) -> 8 pose-spread faces each -> train/test manifests."""
from mfhq.curate.build import cluster_sample, resplit
from mfhq.manifest.schema import ManifestError
from mfhq.manifest.views import RunError

# The errors a user can cause (bad folder, old files, bad option); the CLI prints them.
# RunError and SchemaVersionError are ManifestErrors.
CurateError = (ManifestError, ValueError)

__all__ = ["cluster_sample", "resplit", "CurateError", "RunError"]
