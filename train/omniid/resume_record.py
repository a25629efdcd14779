"""How state.json records the explicit resumes that continued a run despite differences.

`omniid.continuation` finds what an explicit `--resume` continues despite; the CLI hands it to the
engine under RESUMED_WITH, and the engine keeps the run's history under CONTINUED_WITH in every
later checkpoint (and a line of log.jsonl).
"""
from __future__ import annotations

from pathlib import Path

# state.json's list of the explicit resumes that continued despite differences (the engine
# records each: its step, checkpoint and `resumed_differences`); the CLI hands the engine this
# command's under RESUMED_WITH
CONTINUED_WITH = "continued_with_differences"
RESUMED_WITH = "resumed_with_differences"


def continued_with(state: dict, checkpoint: Path, differed: list[str] | None) -> dict:
    """{CONTINUED_WITH: the resumed checkpoint's list plus this resume's entry} for state.json, {}
    while no resume of the run continued despite differences."""
    entry = [{"step": state.get("step"), "checkpoint": str(checkpoint), "differences": differed}] if differed else []
    history = list(state.get(CONTINUED_WITH) or []) + entry
    return {CONTINUED_WITH: history} if history else {}
