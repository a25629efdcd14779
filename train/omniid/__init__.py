"""omniid: the Omni-ID trainer. It reads mfhq's manifests only through the manifest contract."""

__version__ = "0.1.0"
