"""The manifest contract's one owner: schemas and versions (`schema`), atomic Parquet I/O
(`io`), checked readers of manifest folders (`folder`), DuckDB views over runs and manifests
(`views`) and the dataset card (`card`). `omniid` reads manifests only through this package."""
from mfhq.manifest.folder import ManifestFolder, read_manifest, read_sidecar, resolve_listed_path, split_path
from mfhq.manifest.schema import (IDENTITY_SCHEMA, MANIFEST_SCHEMA, MANIFEST_VERSION, RUN_SCHEMA_VERSION,
                                  ManifestError, SchemaVersionError)

__all__ = ["IDENTITY_SCHEMA", "MANIFEST_SCHEMA", "MANIFEST_VERSION", "RUN_SCHEMA_VERSION", "ManifestError",
           "ManifestFolder", "SchemaVersionError", "read_manifest", "read_sidecar", "resolve_listed_path", "split_path"]
