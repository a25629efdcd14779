"""mfhq: the MFHQ dataset builder (Omni-ID's multi-view face data), from videos to manifests."""

__version__ = "0.1.0"
