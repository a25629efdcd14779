"""The convergence rule's count (omniid.convergence): `patience` evaluations in a row without a new
best, a new best being below the best by more than `min_delta` of it. The baseline runs' test
drives the rule with a loss that never moves (lr 0); here the loss falls, stalls and falls again."""
from __future__ import annotations

from omniid.convergence import Convergence


def test_patience_counts_the_evaluations_since_the_last_real_improvement():
    rule = Convergence(patience=2, min_delta=0.01)
    losses = [1.0, 0.98, 0.985, 0.90, 0.895, 0.899]
    stops = [rule.update(step, {"eval_loss": loss}) for step, loss in enumerate(losses, 1)]
    # 0.98 and 0.90 are new bests (each more than 1% under the best), each starting the count
    # again; 0.895 is lower but by under 1% of 0.90: it counts as no improvement.
    assert stops == [False, False, False, False, False, True]
    assert (rule.best, rule.best_step, rule.since_best) == (0.90, 4, 2)
    assert rule.stopped.startswith("converged at step 6: eval_loss has not fallen more than 0.01 of its best 0.90000 "
                                   "(step 4) in 2 evaluations")


def test_a_falling_loss_never_stops_the_run():
    rule = Convergence(patience=1, min_delta=0.0, monitor="heldout")
    assert not any(rule.update(step, {"heldout_loss": 2.0 - 0.1 * step}) for step in range(1, 11))
    assert rule.stopped is None and rule.since_best == 0 and rule.best_step == 10
