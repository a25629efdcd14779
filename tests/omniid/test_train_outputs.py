"""What omniid-train prints means what its label says: samples/s, the closing `done:` result, the
progress bar's swap gap and the logged lr, each checked against a count made here."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from omniid import engine, run_progress
from omniid.cli import main
from omniid_fixtures import kept_faces, one_torch_thread, progress_bars, sample_manifest  # noqa: F401  (pytest fixtures)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def done_result(caplog) -> dict:
    return next(r.args for r in caplog.records if r.getMessage().startswith("done: "))


def test_samples_per_s_is_over_the_steps_time_not_evaluation_or_saving(sample_manifest, tmp_path, monkeypatch):
    """A clock that moves only when we say: 1 s per training step, 100 s per evaluation, 50 s per
    checkpoint save. An evaluation (step 2) and a save (step 3) inside a 4-step log window are not
    training time: 4 steps x 2 identities in 4 s is 2 samples/s."""
    now = [0.0]
    monkeypatch.setattr(run_progress, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def timed(function, seconds):
        def wrapper(*args, **kwargs):
            now[0] += seconds
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(engine, "optimizer_step", timed(engine.optimizer_step, 1.0))
    monkeypatch.setattr(engine, "evaluate", timed(engine.evaluate, 100.0))
    monkeypatch.setattr(engine, "save_step", timed(engine.save_step, 50.0))
    out = tmp_path / "run"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(out), "--steps", "4",
                 "--batch-size", "2", "--log-every", "4", "--eval-every", "2", "--save-every", "3"]) == 0
    train = [r for r in records(out) if "loss" in r]
    assert [(r["step"], r["samples"]) for r in train] == [(4, 8)]
    assert train[0]["samples_per_s"] == 8 / 4.0


def test_a_run_the_rule_stops_between_log_steps_logs_those_steps_and_reports_every_sample(
        sample_manifest, tmp_path, caplog):
    """lr 0: the eval loss never falls, so --patience 1 stops the run at the second evaluation,
    step 6, which --log-every 4 does not log. Steps 5-6 get their record, and the result's samples
    are the run's (6 steps x 2 identities), as state.json says, not step 4's."""
    out = tmp_path / "stopped"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(out), "--steps", "20",
                 "--batch-size", "2", "--lr", "0", "--patience", "1", "--log-every", "4", "--eval-every", "3",
                 "--save-every", "100"]) == 0
    log = records(out)
    assert any(r.get("stopped", "").startswith("converged at step 6") for r in log)
    state = json.loads((out / "checkpoints" / "step-00000006" / "state.json").read_text())
    result = done_result(caplog)
    assert (result["step"], result["samples"]) == (6, 6 * 2) == (state["step"], state["samples"])
    train = [r for r in log if "loss" in r]
    assert [(r["step"], r["loss_steps"], r["samples"]) for r in train] == [(4, 4, 8), (6, 2, 12)]
    assert result["loss"] == train[-1]["loss"] and result["loss_steps"] == 2


def test_the_bar_shows_the_swap_gap_of_the_evaluation_just_made(sample_manifest, tmp_path, progress_bars, caplog):
    """The bar's eval_gap after the run is the last evaluation's (step 4), not step 2's, and it and
    the closing line give it to 0.01% (the near-zero threshold is 0.1%)."""
    bars = progress_bars
    out = tmp_path / "bar"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(out), "--steps", "4",
                 "--lr", "0.005", "--warmup-steps", "0", "--log-every", "2", "--eval-every", "2",
                 "--save-every", "100"]) == 0
    evals = [r for r in records(out) if "eval_loss" in r]
    gaps = [f"{100 * r['eval_swap_gap_rel']:+.2f}%" for r in evals]
    assert len(gaps) == 2 and gaps[0] != gaps[1], gaps  # else the check below could not tell them apart
    fields = dict(part.split("=", 1) for part in bars[0].postfix.split(", "))
    assert fields["eval_gap"] == gaps[-1]
    closing = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("identity-swap gap reached"))
    assert f"(eval, step 4): {evals[-1]['eval_swap_gap']:+.5f} ({gaps[-1]} of the loss" in closing


def test_the_representations_lr_is_logged_beside_the_schedules(sample_manifest, tmp_path):
    """With --representation-lr-scale 0.5 the encoder trains at half the schedule's lr: `lr` is the
    schedule's (warmup 2 steps to 1e-3, then cosine to 1e-4 at step 4), `representation_lr` half of it."""
    out = tmp_path / "scaled"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(out), "--steps", "4",
                 "--representation-lr-scale", "0.5", "--eval-every", "100", "--save-every", "100"]) == 0
    expected = {1: 1e-3 / 2, 2: 1e-3, 3: 1e-3, 4: 1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi / 2))}
    train = [r for r in records(out) if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    for r in train:
        assert math.isclose(r["lr"], expected[r["step"]], rel_tol=1e-9)
        assert math.isclose(r["representation_lr"], 0.5 * expected[r["step"]], rel_tol=1e-9)


def test_a_run_without_a_scaled_representation_logs_one_lr(sample_manifest, tmp_path):
    out = tmp_path / "plain"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(out), "--steps", "1",
                 "--eval-every", "100", "--save-every", "100"]) == 0
    assert "representation_lr" not in records(out)[0]



def test_the_help_says_whose_each_paper_preset_value_is(capsys):
    """The preset is named after the paper: --help marks the 250K/10K steps and the 95% masking as
    the paper's, the batch sizes, lr, warm-up, accumulation and guidance as ours."""
    from omniid.train_args import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("paper 250000/10000 (the paper's)", "paper 0.95 (the paper's)", "paper 8/2 (ours)",
                  "paper 1e-05 (ours)", "paper 1000/250 (ours)", "paper 1 (ours)", "paper 3.5 (ours)"):
        assert shown in text


def test_the_pruning_line_says_what_is_kept(sample_manifest, tmp_path, caplog):
    """--keep-checkpoints 1 --milestone-every 0: each save removes the step before it, and the line
    says the newest 1 is kept and no milestone (not "every 0 steps")."""
    out = tmp_path / "pruned"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(out), "--steps", "3",
                 "--save-every", "1", "--keep-checkpoints", "1", "--milestone-every", "0",
                 "--eval-every", "100"]) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("removed ")]
    assert [line.split(" (")[0] for line in lines] == ["removed step-00000001", "removed step-00000002"]
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-00000003"]
    assert all("every 0" not in line and "keeping the newest 1," in line for line in lines), lines


def test_an_interrupt_says_the_runs_total_steps_and_this_invocations_end(tmp_path):
    """Stopped at step 27 of a tiny-swap run (300 steps) that --stop-after 30 sent from step 25 to
    55: "of 55" would read as the run's length."""
    from omniid.config import get_preset
    from omniid.errors import Interrupted
    from omniid.recovery import stopping_cleanly

    run = SimpleNamespace(out=tmp_path, step=27, end=55, saved=25, main=True, bar=None,
                          preset=get_preset("tiny-swap"))
    with pytest.raises(Interrupted) as stopped:
        with stopping_cleanly(run):
            raise KeyboardInterrupt
    assert str(stopped.value).startswith(
        f"interrupted after step 27 of the run's {get_preset('tiny-swap').optim.total_steps}; this invocation was "
        "to stop at step 55; ")
    run.end = 300
    with pytest.raises(Interrupted) as stopped:
        with stopping_cleanly(run):
            raise KeyboardInterrupt
    assert str(stopped.value).startswith("interrupted after step 27 of the run's 300; no checkpoint")
