"""Moved to `omniid.objectives.mtd`; this name stays for code that imported it."""
from omniid.objectives.mtd import MaskedTransformerDecoder, MTDObjective, OmniIDMTD, exact_random_mask  # noqa: F401
