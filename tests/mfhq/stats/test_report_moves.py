"""Two `mfhq stats` into one --out never mix: while one holds the folder's lock a second is
refused in one line naming the holder and the folder, and --out is left as it was (before, both
ran, and their moves could leave one's page beside the other's tables). A report whose move
into --out was stopped part way (no report.html, files of the earlier report left) is marked as
not whole, and the next stats says so and writes its own report whole. Real processes: one
holding the lock as a running stats does, a real stats SIGKILLed inside its move."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from conftest import REPO, run_cli

HOLD = """import sys
from mfhq.manifest.lock import FolderLock
lock = FolderLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


def _files(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_second_stats_into_a_locked_out_is_refused_in_one_line(sample_run, tmp_path):
    out = tmp_path / "reports"
    run_cli("stats", "--run", str(sample_run), "--out", str(out))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        before = _files(out)
        result = run_cli("stats", "--run", str(sample_run), "--out", str(out), check=False)
        assert result.returncode == 2, result.stdout + result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"{out / 'lock'}: the" in errors[0], errors[0]
        assert f"is in use by pid {holder.pid} on host {socket.gethostname()}" in errors[0], errors[0]
        assert _files(out) == before  # nothing of the refused run
    finally:
        holder.kill()  # SIGKILL: its lock stays, stale
        holder.wait()
    result = run_cli("stats", "--run", str(sample_run), "--out", str(out))
    assert "taking over a stale lock" in result.stderr
    assert "report.html" in _files(out) and not (out / "lock").exists()


def test_a_report_stopped_while_moving_in_is_marked_and_written_again_whole(manifests, sample_run, tmp_path):
    out, fresh = tmp_path / "reports", tmp_path / "fresh"
    run_cli("stats", "--run", str(sample_run), "--manifest", str(manifests), "--out", str(out))
    before = _files(out)
    cut = subprocess.run([sys.executable, str(REPO / "tests" / "support" / "stats_cut.py"), "--run", str(sample_run),
                          "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert cut.returncode == -9, cut.stdout + cut.stderr
    left = _files(out)
    assert "report.html" not in left  # removed first
    kept = [name for name in before if name in left and left[name] == before[name]]
    assert "tables/identities_per_source.csv" in kept  # files of the earlier report are still there
    # ... and the folder says it holds no whole report, for every reader
    assert (out / ".report-moving").is_file(), sorted(left)

    result = run_cli("stats", "--run", str(sample_run), "--out", str(out))
    assert (f"report: {out} holds no whole report: a `mfhq stats` was stopped while moving its report in"
            in result.stderr), result.stderr
    run_cli("stats", "--run", str(sample_run), "--out", str(fresh))
    written, whole = _files(out), _files(fresh)
    assert sorted(written) == sorted(whole)  # nothing of the earlier report, nor the marker, lock or staging
    assert {k: v for k, v in written.items() if k.endswith(".csv")} == {k: v for k, v in whole.items()
                                                                        if k.endswith(".csv")}
