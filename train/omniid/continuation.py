"""What `omniid-train` does with an `--out` that already holds a run: continue it or refuse.

Like `mfhq extract`, a second identical command continues the run from its newest intact
checkpoint (and a finished run says so and trains nothing); the same command with other options
is refused with each option that differs and both values, named by the flag or preset choice
that sets it (`omniid.preset_flags`) (an explicit `--resume` continues
anyway: a lower lr after a non-finite loss is a deliberate change; it warns naming each option and
fact that differs, `explicit_resume`, and the engine records them in state.json and
log.jsonl as `continued_with_differences`); `--restart` starts over explicitly,
deleting the old checkpoints and log, unless another run started from one of those checkpoints
(`omniid.retention`). Options that do not change what is trained (how often to log and save, how
many checkpoints to keep, loader processes; how often and on how many batches to evaluate, unless
the convergence rule counts those evaluations) may differ.

Besides the preset, the run's facts are compared (`omniid.command_facts`, recorded in each
checkpoint's state.json): the data, `--init-from`, the number of processes and the frozen weights.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

from mfhq.manifest.io import first_names
from omniid.checkpoint import CHECKPOINTS, LOG_FILE, PRESET_FILE, PROMPT_EMBEDS_FILE, read_state, run_of
from omniid.command_facts import FACTS, FROZEN, recorded_differences, unrecorded_weights
from omniid.config import get_preset
from omniid.errors import RunMismatch
from omniid.preset_flags import CHOICE_FLAGS, flag_of
from omniid.recovery import resume_from
from omniid.retention import users_of

log = logging.getLogger(__name__)

MAY_DIFFER = {"log_every", "eval_every", "eval_batches", "save_every", "keep_checkpoints", "milestone_every",
              "cpu_threads", "data.workers", "flow_data.workers",
              "flow.flux_path"}  # where FLUX lies on this machine, not what it is
# the convergence rule's clock: patience counts evaluations of the eval loss averaged over
# eval_batches batches, so with the rule on these change the step at which a baseline stops
CONVERGENCE_CLOCK = {"eval_every", "eval_batches"}
# options a resumed run takes from the checkpoint's optimizer state (torch's load_state_dict keeps
# the saved param groups' settings; `set_lr` then scales the new lr by the saved lr_scale)
OPTIMIZER_STATE = {"optim.representation_lr_scale": "param groups (their lr scale)",
                   "optim.weight_decay": "param groups (their weight decay)", "optim.betas": "AdamW betas"}
# the top-level names omniid-train writes in --out (the prompt cache first, before preset.json)
TRAIN_FILES = frozenset({CHECKPOINTS, LOG_FILE, PRESET_FILE, PROMPT_EMBEDS_FILE})
HOW = ("Run the same options and inputs (manifests, --init-from, frozen weights, number of processes) to continue it, "
       "--restart to start it over, or give another --out")


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and key not in ("transformer", "vae"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _changed(saved: dict, ours: dict) -> list[tuple[str, object, object]]:
    """(option, saved value, this command's) for every option that differs and matters: the
    preset's choice (--preset, --stage) first, then the fields in order."""
    theirs, mine = _flat(saved), _flat(_as_saved(ours))
    may_differ = MAY_DIFFER
    if theirs.get("convergence.patience") or mine.get("convergence.patience"):
        may_differ = MAY_DIFFER - CONVERGENCE_CLOCK
    keys = sorted(set(theirs) | set(mine), key=lambda key: (key not in CHOICE_FLAGS, key))
    return [(key, theirs.get(key), mine.get(key)) for key in keys
            if key not in may_differ and theirs.get(key) != mine.get(key)]


def _as_saved(preset: dict) -> dict:
    return json.loads(json.dumps(preset))  # as preset.json holds it: tuples as lists


def _chosen(preset: dict, representation: str | None) -> dict | None:
    """The flat preset that `preset`'s choice (name, stage, representation) gives before any flag;
    None for one this version cannot build (a preset since renamed)."""
    try:
        return _flat(_as_saved(get_preset(preset.get("name"), preset.get("stage", "mtd"),
                                          representation or "omniid").to_dict()))
    except (KeyError, TypeError):
        return None


class _Namer:
    """Names each differing option after what set it: its flag (`omniid.preset_flags`) when either
    value is not what its run's choice of --preset, --stage and --representation gives, else that
    choice ('set by --stage flow'). representations: the run's (None: unrecorded, taken as this
    command's) and this command's."""

    def __init__(self, saved: dict, ours: dict, representations: tuple[str | None, str | None] = (None, None)):
        ran, mine = representations[0] or representations[1], representations[1]
        self.defaults = _chosen(saved, ran), _chosen(_as_saved(ours), mine)
        choices = [(flag, saved.get(key), ours.get(key)) for key, flag in CHOICE_FLAGS.items()]
        choices.append(("--representation", ran, mine))
        self.choice = " and ".join(f"{flag} {new}" for flag, old, new in choices if old != new)

    def __call__(self, key: str, theirs, mine, note: str = "") -> str:
        if key in CHOICE_FLAGS:
            return f"{CHOICE_FLAGS[key]} {theirs} (this command: {mine}{note})"
        flag = flag_of(key)
        by_flag = any(default is None or default.get(key) != value
                      for default, value in zip(self.defaults, (theirs, mine)))
        if self.choice and not by_flag:
            return f"{key} {theirs!r} (this command: {mine!r}, set by {self.choice}{note})"
        return f"{f'{flag} ({key})' if flag else key} {theirs!r} (this command: {mine!r}{note})"


def differences(saved: dict, ours: dict, representations: tuple[str | None, str | None] = (None, None)) -> list[str]:
    """'option: saved value (this command: ours)' for every option that differs and matters, each
    named after the flag or preset choice that sets it (`_Namer`)."""
    name = _Namer(saved, ours, representations)
    return [name(key, theirs, mine) for key, theirs, mine in _changed(saved, ours)]


def _resumed(out: Path, resume: str, rank: int, world: int) -> tuple[Path | None, dict]:
    """(the step folder this command will resume from, what it recorded about how the run was
    started: `FACTS`): the engine's choice (`omniid.recovery.resume_from`), so a damaged `latest` is
    set aside here and the older intact checkpoint that resumes is the one compared; (None, {})
    without one."""
    folder = resume_from(out, resume, rank, world)
    return (folder, read_state(folder)) if folder is not None else (None, {})


def _fact_differences(out: Path, facts: dict, recorded: dict) -> list[str]:
    if not recorded:  # no checkpoint yet: nothing to continue, the run starts at step 0
        return []
    if "manifest" in facts and "manifest" not in recorded:
        raise RunMismatch(f"{out}: its newest intact checkpoint was saved before omniid-train recorded the "
                          "manifest a run trains on, so this command cannot check that it continues on the same data: "
                          "add --resume auto to continue it with this --manifest, --restart to start it over, or give "
                          "another --out")
    unrecorded = unrecorded_weights(recorded, facts)
    if unrecorded:
        raise RunMismatch(f"{out}: its newest intact checkpoint was saved before omniid-train recorded the "
                          f"frozen weights a run loads, so this command cannot check that it continues with the same "
                          f"{' and '.join(unrecorded)}: add --resume auto to continue it with these, --restart to "
                          "start it over, or give another --out")
    return recorded_differences(recorded, facts)


def _read_preset(saved: Path) -> dict:
    """preset.json, or a one-line refusal for one that cannot be read (damaged by hand, or by a
    kill mid-write before it was written atomically)."""
    try:
        preset = json.loads(saved.read_text())
        problem = None if isinstance(preset, dict) else "not a JSON object"
    except (OSError, UnicodeDecodeError, ValueError) as error:
        preset, problem = None, str(error)
    if problem is not None:
        raise RunMismatch(f"{saved}: cannot be read ({problem}), so this command cannot check the run's options: "
                          "--resume auto continues the run from its checkpoints (and writes it again), --restart "
                          "starts it over, or give another --out")
    return preset


def check_run_folder(out: Path, resume: str | None, restart: bool) -> None:
    """RunMismatch unless `--out` is new, empty or holds a run (its preset.json, written before any
    checkpoint or log; the user's own files beside a run, an eval output say, are left alone). Without
    preset.json, files omniid-train does not write are refused even with --restart (nothing of them
    is deleted), and checkpoints or a log are refused unless --restart deletes them or an explicit
    --resume takes them: a fresh start there would cut the log and mix its steps into theirs."""
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []
    if not names or (out / PRESET_FILE).is_file():
        return
    foreign = [name for name in names if name not in TRAIN_FILES]
    if foreign:
        raise RunMismatch(f"--out {out}: holds files that are not an omniid-train run ({first_names(foreign)}); "
                          "give a new or empty folder")
    kept = [name for name in names if name in (CHECKPOINTS, LOG_FILE)]
    if kept and not (restart or resume):
        raise RunMismatch(f"--out {out}: holds a run's files ({first_names(kept)}) but no {PRESET_FILE}, so what "
                          "trained there cannot be compared with this command: --resume auto continues from its "
                          "checkpoints, --restart deletes them and starts over, or give another --out")


def _any_checkpoint(out: Path) -> bool:
    """Whether `out/checkpoints` holds anything but a killed save's temporaries (step folders,
    `latest`, damaged ones set aside, the record of runs started from them)."""
    root = out / CHECKPOINTS
    return root.is_dir() and any(not p.name.startswith(".") for p in root.iterdir())


def continuation(out: Path, preset_dict: dict, facts: dict, resume: str | None, restart: bool, rank: int = 0,
                 world: int = 1) -> str | None:
    """The `--resume` value this invocation runs with: the one given, 'auto' for an `--out` that
    holds a run with the same options, None for a fresh start. facts: `FACTS` as this command
    would record them in state.json, compared with the record of the checkpoint it resumes from."""
    out = Path(out)
    check_run_folder(out, resume, restart)
    if resume:
        return resume
    saved = out / PRESET_FILE
    if not saved.is_file() or restart:
        return None
    if not _any_checkpoint(out):  # nothing saved to continue (a check failed, or a stop before the first save)
        if rank == 0:
            log.info("%s holds no checkpoint yet: starting the run with this command's options", out)
        return None
    run_preset = _read_preset(saved)  # an unreadable one is refused before any checkpoint is looked at
    _, recorded = _resumed(out, "auto", rank, world)
    representations = recorded.get("representation"), facts.get("representation")
    diffs = differences(run_preset, preset_dict, representations) + _fact_differences(out, facts, recorded)
    if diffs:
        raise RunMismatch(f"{out} holds a run made with other options: {'; '.join(diffs)}. {HOW}")
    return "auto"


def explicit_resume(out: Path, preset, facts: dict, resume: str, rank: int = 0,
                    world: int = 1) -> tuple[object, list[str]]:
    """(the preset to train with, what an explicit --resume continues despite: each option of the
    run's preset.json and each fact the checkpoint recorded that differs from this command's, old
    and new value; [] without a checkpoint yet). The options the restored optimizer state keeps
    (`OPTIMIZER_STATE`) take the checkpoint's value in the preset too: the optimizer is built as
    saved (another number of param groups would not load) and preset.json says what trains. The
    checkpoint compared is the one resumed (a folder --resume names must be intact)."""
    folder, recorded = _resumed(Path(out), resume, rank, world)
    if folder is None or not recorded:
        return preset, []
    diffs, saved = [], None
    try:
        saved = _read_preset(run_of(folder) / PRESET_FILE)  # a superseded step's is its run's too
    except RunMismatch:  # missing or unreadable: the engine writes this command's
        diffs.append(f"{run_of(folder) / PRESET_FILE} cannot be read, so the run's options are not compared")
    changed = _changed(saved, preset.to_dict()) if saved is not None else []
    name = _Namer(saved or {}, preset.to_dict(), (recorded.get("representation"), facts.get("representation")))
    for key, theirs, mine in changed:
        kept = f"; not applied: the checkpoint's {OPTIMIZER_STATE[key]} are restored" if key in OPTIMIZER_STATE else ""
        diffs.append(name(key, theirs, mine, kept))
    kept = {key.removeprefix("optim."): tuple(old) if isinstance(old, list) else old
            for key, old, _ in changed if key in OPTIMIZER_STATE}
    unrecorded = [key for key, value in facts.items()
                  if key not in recorded and value is not None and key != "init_from" and key not in FROZEN.values()]
    diffs += recorded_differences(recorded, {k: v for k, v in facts.items() if k not in unrecorded})
    diffs += [f"{FACTS.get(key, key)}: not recorded by {folder.name} (this command: {facts[key]!r})"
              for key in unrecorded]
    return (dataclasses.replace(preset, optim=dataclasses.replace(preset.optim, **kept)) if kept else preset), diffs


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
