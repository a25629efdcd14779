"""omniid: the Omni-ID trainer. It reaches mfhq through two doors only: `mfhq.manifest` (the
manifest contract) and `mfhq.faces` (the evaluation's face measurements)."""

__version__ = "0.1.0"
