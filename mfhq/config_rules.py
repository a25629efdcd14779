"""The allowed range of every pipeline option, and the field that declares an option.

Each option is a dataclass field made by `option(default, doc, rule)` (mfhq/config_sections.py):
its metadata holds what it does and its rule, so the rule has one owner, the field. A value out of
range (`fps: 0`, `shard_size: -1`, a NaN threshold, an unknown decoder name) would otherwise run
and then blame every video, or write a plan that blocks the right config later. One message names
the file, the option, the value and what is allowed; docs/presets.md shows the same text.
"""
from __future__ import annotations

import math
import re
from dataclasses import Field, dataclass, field
from typing import Any

from mfhq.errors import MfhqError


# The executors by name -> "module:Class", imported only when chosen (mfhq.executors.base), so an
# optional engine's library is needed only by those who use it. The table lives on this floor so
# that a preset's `run.executor` is checked where the preset is loaded, without importing upward.
EXECUTORS: dict[str, str] = {
    "local": "mfhq.executors.local:LocalExecutor",
    "ray": "mfhq.executors.ray:RayExecutor",
}


class ConfigError(MfhqError, ValueError):
    """A pipeline preset that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Range:
    """A finite number in [low, high]; `above` makes the low bound exclusive."""

    low: float | None = None
    high: float | None = None
    above: bool = False
    optional: bool = False  # None is allowed (the option is off)

    def ok(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            text = f"a number from {self.low:g} to {self.high:g}"
        elif self.low is not None:
            text = f"a number {'>' if self.above else '>='} {self.low:g}"
        else:
            text = "a finite number"
        return text + (", or null (off)" if self.optional else "")


@dataclass(frozen=True)
class OneOf:
    choices: tuple[str, ...]
    pattern: str | None = None   # also allowed: a string matching this (e.g. module:Class)
    hint: str = ""

    def ok(self, value) -> bool:
        return value in self.choices or (self.pattern is not None and isinstance(value, str)
                                         and re.fullmatch(self.pattern, value) is not None)

    def __str__(self) -> str:
        return "one of " + ", ".join(self.choices) + (f" or {self.hint}" if self.hint else "")


POSITIVE = Range(0, above=True)
COUNT = Range(1)             # an integer of at least one
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)
COSINE = Range(-1, 1)

# The rule of run.executor: a name in EXECUTORS, read when checked (one may be registered at run time).
EXECUTOR = "executors"


def option(default: Any, doc: str, rule: Range | OneOf | str | None = None) -> Any:
    """A preset option's field: its default, what it does (docs/presets.md) and its allowed range."""
    metadata = {"doc": doc, "rule": rule}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def rule_of(option_field: Field) -> Range | OneOf | None:
    """The field's rule, with the executor names as they are now."""
    rule = option_field.metadata.get("rule")
    if rule == EXECUTOR:
        return OneOf(tuple(sorted(EXECUTORS)))
    return rule


def counts(option_field: Field) -> bool:
    """Whether the option counts something (its type is int or int | None), so 2.5 is refused too."""
    kind = option_field.type if isinstance(option_field.type, str) else getattr(option_field.type, "__name__", "")
    return kind.replace(" ", "").split("|")[0] == "int"


def allowed(rule: Range | OneOf, integer: bool) -> str:
    """What a rule allows, in words: `a number > 0`, `an integer >= 1`, `one of jpg, png`."""
    text = str(rule)
    if integer and isinstance(rule, Range):
        text = text.replace("a number", "an integer")
    return text


def check_option(origin: str, section: str, option_field: Field, value) -> None:
    """Raise ConfigError unless value is allowed by the option's field (its rule and its type)."""
    rule = rule_of(option_field)
    if rule is None or (value is None and isinstance(rule, Range) and rule.optional):
        return
    integer = counts(option_field)
    whole = not integer or isinstance(value, int)
    if not (whole and rule.ok(value)):
        raise ConfigError(f"{origin}: {section}.{option_field.name} is {value!r}; "
                          f"allowed: {allowed(rule, integer)}")
