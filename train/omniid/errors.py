"""The mistakes a user can make with omniid, under one base class.

A CLI catches `OmniIDError` (and mfhq's `MfhqError`, through `mfhq.faces`) and nothing wider: a
user's mistake (a bad flag, a missing checkpoint, weights or image) is one line naming the
problem, while a bug stays a traceback. Each class also derives from the matching builtin
(ValueError, FileNotFoundError...), so library code that catches those keeps working.
The data errors are also mfhq.manifest's `ManifestError`, so `except ManifestError` sees them.
"""
from __future__ import annotations

from mfhq.manifest import ManifestError


class OmniIDError(Exception):
    """A problem with the user's flags, files or environment; the message says what to do."""


class FlagError(OmniIDError, ValueError):
    """A flag value or a combination of flags that this run refuses, with the reason."""


class DataError(OmniIDError, ManifestError):
    """A manifest, or files it lists, that the trainer cannot use; the message names them."""


class BadCropsError(DataError):
    """More crops or masks could not be read than the run allows."""


class CheckpointError(OmniIDError, ValueError):
    """A checkpoint (or run folder) that cannot be used here; the message names the path."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """A path that is not a run folder, a `checkpoints/latest` pointer or a checkpoint folder
    holding the files asked for."""


class ClipWeightsMissing(OmniIDError, FileNotFoundError):
    """The preset wants pretrained CLIP weights that are not on this machine, or the file is unreadable."""


class FluxWeightsMissing(OmniIDError, FileNotFoundError):
    """The preset wants FLUX files that are not on this machine (the message lists them), or one is unreadable."""


class SeveralWeightsMissing(OmniIDError, FileNotFoundError):
    """Several of a command's weights missing or damaged (FLUX, CLIP, mfhq's models), each named."""

    def __init__(self, problems: list[Exception]):
        super().__init__(f"{len(problems)} kinds of weights are missing or damaged:\n"
                         + "\n".join(f"{n}. {error}" for n, error in enumerate(problems, 1)))
        self.problems = problems


def check_weights(*checks):
    """Each check's result, in order, after running them all: every missing or damaged weight a
    command needs is reported at once (one problem: its own error; several: `SeveralWeightsMissing`
    listing each), so that a user fetches them in one go instead of one per attempt."""
    from mfhq.faces import MfhqError  # mfhq's weights errors; here, not at import: `--help` stays light

    results, problems = [], []
    for check in checks:
        try:
            results.append(check())
        except SeveralWeightsMissing as error:  # a check made of checks: its problems beside the others'
            results.append(None)
            problems.extend(error.problems)
        except (ClipWeightsMissing, FluxWeightsMissing, MfhqError) as error:
            results.append(None)
            problems.append(error)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise SeveralWeightsMissing(problems)
    return results


class PromptCacheError(OmniIDError, ValueError):
    """A prompt embeddings file that does not hold what the preset asks for."""


class PromptCacheMissing(OmniIDError, FileNotFoundError):
    """A prompt embeddings file that does not exist."""


class NoImage(OmniIDError, FileNotFoundError):
    """An image path that does not exist or cannot be decoded; the message names the file."""


class NoFace(OmniIDError, ValueError):
    """An input image in which the detector finds no face; the message names the file."""


class NonFiniteLoss(OmniIDError, FloatingPointError):
    """Training stopped: the loss became NaN or infinite."""


class RunMismatch(OmniIDError, ValueError):
    """`--out` holds a run made with other options; the message names each one and its two values."""


class OutputError(FlagError):
    """An output folder (`--out`) that is a file, lies under one, or cannot be written."""


class DiskFull(OmniIDError, RuntimeError):
    """The disk of the output folder filled up; the message names the file system and its free space."""


class Interrupted(OmniIDError, RuntimeError):
    """Ctrl-C or SIGTERM stopped the run cleanly; the message says how to resume."""
