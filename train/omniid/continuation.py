"""What `omniid-train` does with an `--out` that already holds a run: continue it or refuse.

Like `mfhq extract`, a second identical command continues the run from its newest intact
checkpoint (and a finished run says so and trains nothing); the same command with other options
is refused with each option that differs and both values (an explicit `--resume` continues
anyway: a lower lr after a non-finite loss is a deliberate change); `--restart` starts over explicitly,
deleting the old checkpoints and log, unless another run started from one of those checkpoints
(`omniid.retention`). Options that do not change what is trained (how often to log, evaluate and
save, how many checkpoints to keep, loader processes) may differ.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from omniid.checkpoint import CHECKPOINTS, LOG_FILE, PRESET_FILE, pointed, read_state
from omniid.errors import RunMismatch
from omniid.retention import users_of

log = logging.getLogger(__name__)

MAY_DIFFER = {"log_every", "eval_every", "eval_batches", "save_every", "keep_checkpoints", "milestone_every",
              "cpu_threads", "data.workers", "flow_data.workers",
              "flow.flux_path"}  # where FLUX lies on this machine, not what it is


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and key not in ("transformer", "vae"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(saved: dict, ours: dict) -> list[str]:
    """'name: saved value (this command: ours)' for every option that differs and matters."""
    theirs, mine = _flat(saved), _flat(json.loads(json.dumps(ours)))  # as preset.json holds it: tuples as lists
    return [f"{key} {theirs.get(key)!r} (this command: {mine.get(key)!r})"
            for key in sorted(set(theirs) | set(mine))
            if key not in MAY_DIFFER and theirs.get(key) != mine.get(key)]


def run_facts(out: Path) -> dict:
    """What the run's newest checkpoint recorded about how it was started (representation, manifest)."""
    latest = pointed(Path(out) / CHECKPOINTS)
    return read_state(latest) if latest is not None and latest.is_dir() else {}


def continuation(out: Path, preset_dict: dict, facts: dict, resume: str | None, restart: bool) -> str | None:
    """The `--resume` value this invocation runs with: the one given, 'auto' for an `--out` that
    holds a run with the same options, None for a fresh start. facts: what this command would
    record in state.json (representation, manifest), compared with the run's own record."""
    out = Path(out)
    if resume:
        return resume
    saved = out / PRESET_FILE
    if not saved.is_file():
        return None
    if restart:
        return None
    diffs = differences(json.loads(saved.read_text()), preset_dict)
    recorded = run_facts(out)
    diffs += [f"{key} {recorded[key]!r} (this command: {value!r})" for key, value in sorted(facts.items())
              if key in recorded and recorded[key] != value]
    if diffs:
        raise RunMismatch(f"{out} holds a run made with other options: {'; '.join(diffs)}. Run the same options "
                          f"to continue it, --restart to start it over, or give another --out")
    return "auto"


def restart_run(out: Path) -> None:
    """Deletes a run's checkpoints, log and preset (`--restart`), unless another run started
    from one of its checkpoints."""
    out = Path(out)
    root = out / CHECKPOINTS
    used = users_of(root)
    if used:
        named = "; ".join(f"{name} by {', '.join(runs)}" for name, runs in sorted(used.items()))
        raise RunMismatch(f"{out}: --restart would delete checkpoints other runs started from ({named}); "
                          f"start over in another --out")
    if (out / PRESET_FILE).is_file() or root.is_dir():
        log.warning("--restart: deleting %s's checkpoints and log", out)
    shutil.rmtree(root, ignore_errors=True)
    for name in (LOG_FILE, PRESET_FILE):
        (out / name).unlink(missing_ok=True)
