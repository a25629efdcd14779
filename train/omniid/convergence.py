"""When a run stops as converged: the preset's `convergence` rule, checked at each evaluation.

Ours: the paper trains its baselines "to convergence" without saying how. The rule watches one
eval set's loss (`monitor`: `eval`, test.parquet's identities, or `heldout`, --holdout-faces
frames of the training identities); a new best is below the best so far by more than `min_delta`
of it; after `patience` evaluations in a row without one, the run stops at that step (its last
checkpoint is saved there) and says why in log.jsonl, state.json and the result. `total_steps`
stays the cap. The rule's state goes into each checkpoint's state.json (`convergence`), so a
resumed run stops where an uninterrupted one would, and a converged run resumed does nothing.

Only rank 0 evaluates; its decision reaches every rank, which then stop together.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from omniid.distributed import gather
from omniid.errors import FlagError, OmniIDError

log = logging.getLogger(__name__)

MONITORS = {"eval": "test.parquet beside --manifest, or --test-manifest", "heldout": "--holdout-faces N"}


@dataclass
class Convergence:
    patience: int = 0               # 0: the rule is off
    min_delta: float = 0.0
    monitor: str = "eval"
    every: int = 1                  # the preset's eval_every: the rule sees those evaluations only
    best: float | None = None
    best_step: int | None = None
    since_best: int = 0             # evaluations since the best
    stopped: str | None = None      # why the run stopped, once it has

    @property
    def on(self) -> bool:
        return self.patience > 0

    def update(self, step: int, evaluated: dict) -> bool:
        """One evaluation's record (`{monitor}_loss`) -> whether the run stops here."""
        loss = float(evaluated[f"{self.monitor}_loss"])
        if self.best is None or loss < self.best * (1 - self.min_delta):
            self.best, self.best_step, self.since_best = loss, step, 0
            return False
        self.since_best += 1
        if self.since_best < self.patience:
            return False
        self.stopped = (f"converged at step {step}: {self.monitor}_loss has not fallen more than "
                        f"{self.min_delta:g} of its best {self.best:.5f} (step {self.best_step}) in {self.patience} "
                        f"evaluations")
        return True

    def cap(self, step: int, end: int) -> int:
        """The step this invocation trains to: `step` if the run has converged already."""
        return step if self.stopped else end

    def after_eval(self, step: int, end: int, evaluated: dict, jsonl, world: int) -> int:
        """The run's new end after `step`: `step` when the rule stops it here, else `end`. Every
        rank calls this after every step; rank 0 decides at multiples of `every`, whatever
        --stop-after did, so a resumed run sees the same evaluations as an uninterrupted one."""
        if not self.on or step % self.every:
            return end
        stop = gather(self.update(step, evaluated) if evaluated else None, world)[0]
        if not stop:
            return end
        if not self.stopped:  # the ranks that do not evaluate learn it from rank 0
            self.stopped = f"converged at step {step} (rank 0's evaluation)"
        jsonl.write({"step": step, "stopped": self.stopped, "convergence": self.state()})
        log.info("%s", self.stopped)
        return step

    def state(self) -> dict:
        return dataclasses.asdict(self)

    def record(self) -> dict:
        """What state.json and the result get: the rule's state, when it is on."""
        return {"convergence": self.state()} if self.on else {}


def start_rule(preset, eval_sets, saved: dict | None, rank: int, world: int) -> Convergence:
    """The run's rule from the preset's `convergence` section, with a resumed checkpoint's state
    (`saved`). Rank 0 checks that the monitored eval set exists; every rank gets its answer."""
    config = preset.convergence
    rule = Convergence(config.patience, config.min_delta, config.monitor, preset.eval_every)
    if saved and rule.on:
        rule = dataclasses.replace(rule, **{k: saved[k] for k in ("best", "best_step", "since_best", "stopped")
                                            if k in saved})
        if rule.since_best < rule.patience:  # resumed with more patience: it goes on
            rule.stopped = None
    problem = None
    if rank == 0 and rule.on and rule.monitor not in eval_sets:
        problem = FlagError(
            f"the convergence rule watches the {rule.monitor} loss, which needs "
            f"{MONITORS.get(rule.monitor, 'an eval set of that name')}; this run has "
            f"{', '.join(eval_sets) or 'no eval set'} (or train to --steps with --patience 0)")
    problem = gather(problem, world)[0]
    if isinstance(problem, OmniIDError):
        raise problem
    if rule.stopped:
        log.info("this run has already stopped: %s", rule.stopped)
    return rule
