"""The grammar every `mfhq` command shares.

- `-v/--verbose` and `-q/--quiet` are global and may stand before or after any subcommand
  (`mfhq -q stats ...` and `mfhq stats ... -q` are the same): the group moves them to the front
  before parsing.
- Options show real metavars (PATH, N, LIST, NAME|PATH), never the type placeholders.
- Help is click's plain layout: it wraps at 80 columns and never cuts a default or an example.
- One name per meaning: `--manifest` is the manifest folder everywhere (old names stay as
  hidden aliases for a release, see `alias_of`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import NoReturn, Optional

import typer
from typer.core import TyperGroup

from mfhq.presets import DEFAULT_PRESET

GLOBAL_FLAGS = ("-v", "--verbose", "-q", "--quiet")
log = logging.getLogger("mfhq")

PIPELINE_HELP = (f"Pipeline preset: a packaged one by name (sample, paper) or a YAML file. Default: "
                 f"{DEFAULT_PRESET}, the offline preset whose models ship in pip packages; the paper preset "
                 "(GPU, non-commercial weights) is only used when asked for by name")
DEFAULT_RULE = (f"Without --pipeline every command uses the packaged '{DEFAULT_PRESET}' preset and says so; "
                "the paper preset is always asked for by name (--pipeline paper).")


def hoist_global_flags(args: list[str]) -> list[str]:
    """The global flags moved in front of the subcommand (up to a `--`, which ends options)."""
    args = list(args)
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    return flags + [a for a in args[:end] if a not in GLOBAL_FLAGS] + args[end:]


class GlobalFlagsGroup(TyperGroup):
    """The top-level group: global flags are accepted anywhere on the line."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, hoist_global_flags(args))


def new_app(help_text: str, **kwargs) -> typer.Typer:
    """A Typer app with the shared layout (plain help at 80 columns, no completion flags)."""
    return typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, help=help_text,
                       context_settings={"max_content_width": 80}, **kwargs)


def path_option(default, *names: str, help: str, **kwargs):
    return typer.Option(default, *names, metavar="PATH", help=help, **kwargs)


def count_option(default, *names: str, help: str, **kwargs):
    return typer.Option(default, *names, metavar="N", help=help, **kwargs)


def pipeline_option():
    return typer.Option(None, "--pipeline", metavar="NAME|PATH", help=PIPELINE_HELP, show_default=False)


def flag(*names: str, help: str):
    """An on/off switch: `--name` alone, no `--no-name` twin, no placeholder."""
    return typer.Option(False, *names, help=help, show_default=False)


def manifest_option(default: Optional[Path], help: str, required: bool = False):
    return typer.Option(... if required else default, "--manifest", metavar="PATH", help=help)


def hidden_alias(*names: str):
    """An old option name kept for one release; `alias_of` says which name replaces it."""
    return typer.Option(None, *names, hidden=True, metavar="PATH")


def alias_of(new: str, value, old_value, old_names: str):
    """The value given under the new name, else under an old one (with a warning naming both)."""
    if old_value is None:
        return value
    log.warning("%s is now called %s; the old name will go in a later release", old_names, new)
    return old_value


def fail(message: str) -> NoReturn:
    """A user's mistake: one line, exit code 2."""
    log.error("%s", message)
    raise typer.Exit(code=2)
