"""What every omniid command line shares: its help layout, -v/-q, --version and logging.

One grammar across `omniid-train`, `omniid-eval`, `omniid-generate` and `python -m omniid.flux`,
the same as `mfhq`'s: `-v/--verbose` and `-q/--quiet` anywhere on the line, `--version`, help
that fits 80 columns with real placeholders (PATH, N, X, LIST) and a default shown only where
there is one (required options and options the preset decides show none). Log lines and the
progress bar share the terminal (`logging_redirect_tqdm`), and `-q` hides the bar.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HELP_WIDTH = 80


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown once, only for optional flags that have one; the epilog's layout kept."""

    def __init__(self, prog, indent_increment=2, max_help_position=30, width=None):
        columns = int(os.environ.get("COLUMNS", HELP_WIDTH))
        super().__init__(prog, indent_increment, max_help_position, min(width or columns, HELP_WIDTH))

    def _get_help_string(self, action):
        help_text = action.help or ""
        if (action.default is None or action.default is False or action.default == argparse.SUPPRESS
                or action.required or "default" in help_text
                or "%(default)" in help_text or action.option_strings == []):
            return help_text
        return f"{help_text} (default: %(default)s)" if help_text else "(default: %(default)s)"


def parser(prog: str, description: str, version: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser with the shared formatter, --version and -v/-q."""
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {version}")
    add_verbosity(p)
    return p


def add_verbosity(p: argparse.ArgumentParser) -> None:
    """-v/-q on a parser (and on each subcommand's, so they work after the subcommand too)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="debug messages too")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="warnings and errors only; no progress bar")


def setup_logging(args: argparse.Namespace) -> None:
    """Root logger at WARNING (libraries stay quiet), omniid's at INFO, DEBUG with -v, WARNING with -q."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    level = logging.DEBUG if getattr(args, "verbose", False) else (
        logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    logging.getLogger("omniid").setLevel(level)


def progress_enabled() -> bool:
    """Progress bars show unless -q raised omniid's log level above INFO."""
    return logging.getLogger("omniid").isEnabledFor(logging.INFO)


@contextlib.contextmanager
def terminal():
    """Log lines printed through tqdm's writer, so they never cut through a progress bar."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield
