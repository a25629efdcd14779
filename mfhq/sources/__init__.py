"""Dataset adapters: each reads one source's own metadata and yields Clip records."""
from mfhq.sources.base import Source, SourceError, get_source, register_source, source_names
from mfhq.sources import folder as _folder  # noqa: F401  (registers the adapter)

__all__ = ["Source", "SourceError", "get_source", "register_source", "source_names"]
