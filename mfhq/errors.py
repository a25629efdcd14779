"""The one base class of the mistakes a user can make with mfhq.

A CLI catches `MfhqError` (and nothing wider): a user's mistake (a bad flag, a damaged file, a
missing model) is one line naming the problem, while a bug stays a traceback. Every user-facing
error of the package derives from it; some also derive from a builtin (ValueError, OSError) so
that library callers that caught those keep working.
"""
from __future__ import annotations


class MfhqError(Exception):
    """A problem with the user's input, flags, files or environment; the message says what to do."""
