"""omniid-train's progress bar counts the run's steps out of the run's total, through a resume
and a --stop-after, and labels an invocation that stops sooner (--stop-after, the convergence
rule) apart from that count: the real trainer on the tiny preset, the bar as tqdm renders it."""
from __future__ import annotations

from tqdm import tqdm

from omniid.cli import main
from omniid_fixtures import kept_faces, one_torch_thread, progress_bars, sample_manifest  # noqa: F401  (pytest fixtures)


def shown(bar: tqdm) -> tuple[int, int, str, str]:
    return bar.n, bar.total, bar.desc, str(bar)


def test_a_resumed_run_in_pieces_shows_the_runs_step_out_of_the_runs_total(sample_manifest, tmp_path, progress_bars):
    run = ["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(tmp_path / "run"), "--steps", "6",
           "--eval-every", "100", "--save-every", "100"]
    assert main([*run, "--stop-after", "2"]) == 0  # steps 1-2 of 6
    assert main([*run, "--stop-after", "2"]) == 0  # resumed: steps 3-4
    assert main(run) == 0                          # resumed: steps 5-6, the run's end
    first, second, last = (shown(bar) for bar in progress_bars)
    assert first[:3] == (2, 6, "omniid mtd, stops at step 2 (--stop-after 2)")
    assert "step 2/6" in first[3] and " 33%|" in first[3], first[3]
    assert second[:3] == (4, 6, "omniid mtd, stops at step 4 (--stop-after 2)")
    assert "step 4/6" in second[3] and " 67%|" in second[3], second[3]
    assert last[:3] == (6, 6, "omniid mtd") and "step 6/6" in last[3] and "100%|" in last[3], last[3]


def test_a_run_the_convergence_rule_stops_says_so_beside_the_runs_total(sample_manifest, tmp_path, progress_bars):
    """lr 0: the eval loss never falls, and --patience 1 stops the run at its second evaluation."""
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(tmp_path / "run"),
                 "--steps", "20", "--lr", "0", "--patience", "1", "--eval-every", "3", "--save-every", "100"]) == 0
    n, total, desc, text = shown(progress_bars[0])
    assert (n, total, desc) == (6, 20, "omniid mtd, stops at step 6 (converged)")
    assert "step 6/20" in text, text
