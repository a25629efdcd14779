"""Dataset adapters: each reads one source's own metadata and yields Clip records."""
from mfhq.sources.base import Source, SourceError, get_source, register_source, source_class, source_names
# Importing the adapters registers them.
from mfhq.sources import folder as _folder  # noqa: F401
from mfhq.sources import celebvhq as _celebvhq, celebvtext as _celebvtext  # noqa: F401
from mfhq.sources import talkinghead as _talkinghead, vfhq as _vfhq  # noqa: F401
from mfhq.sources import several as _several  # noqa: F401

__all__ = ["Source", "SourceError", "get_source", "register_source", "source_class", "source_names"]
