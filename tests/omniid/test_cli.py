"""omniid-train's own promises: counts and --out checked before any model is built, and Ctrl-C or
SIGTERM ending a run with one line that says how to resume, exit 130 and an intact `latest`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omniid.checkpoint import damage
from omniid.cli import main
from ctrl_c import ctrl_c_reaches_it
from omniid_fixtures import kept_faces, one_torch_thread, read_only_dir, sample_manifest  # noqa: F401  (pytest fixtures)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def nothing_built(monkeypatch):
    """Fails the test if a model gets built."""
    import omniid.objectives

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the flags were checked")

    monkeypatch.setattr(omniid.objectives, "build_objective", refuse)


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0"], "--steps takes an integer >= 1, got 0"),
    (["--steps", "-1"], "--steps takes an integer >= 1, got -1"),
    (["--batch-size", "0"], "--batch-size takes an integer >= 1, got 0"),
    (["--save-every", "0"], "--save-every takes an integer >= 1, got 0"),
])
def test_counts_are_checked_before_any_work(sample_manifest, tmp_path, caplog, nothing_built, flags, message):
    out = tmp_path / "run"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(out), *flags]) == 2
    assert message in caplog.text
    assert not out.exists()


def test_an_unusable_out_is_refused_before_any_work(sample_manifest, tmp_path, caplog, nothing_built):
    common = ["--manifest", str(sample_manifest), "--preset", "tiny", "--steps", "1"]
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert main([*common, "--out", str(a_file)]) == 2
    assert f"--out {a_file}: is a file, not a folder; --out takes a writable folder" in caplog.text
    caplog.clear()
    assert main([*common, "--out", str(a_file / "run")]) == 2
    assert f"{a_file} is a file, so no folder can be made under it" in caplog.text


def test_an_out_on_a_read_only_file_system_is_refused(sample_manifest, read_only_dir, caplog, nothing_built):
    out = read_only_dir / "run"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--out", str(out)]) == 2
    assert f"--out {out}: {read_only_dir}, where it would be made, is on a read-only file system" in caplog.text


def _start(manifest: Path, out: Path, stderr) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "train"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    # one DataLoader worker: a terminal's Ctrl-C reaches it too (the whole process group)
    return subprocess.Popen(
        [sys.executable, "-m", "omniid", "--manifest", str(manifest), "--preset", "tiny", "--out", str(out),
         "--steps", "1000000", "--save-every", "1", "--eval-every", "1000000", "--log-every", "1000000",
         "--workers", "1"],
        cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr,
        preexec_fn=ctrl_c_reaches_it)


def test_ctrl_c_and_sigterm_stop_with_one_line_and_an_intact_latest(sample_manifest, tmp_path):
    outs = {signal.SIGINT: tmp_path / "int", signal.SIGTERM: tmp_path / "term"}
    logs = {how: open(tmp_path / f"{out.name}.stderr", "w+") for how, out in outs.items()}
    runs = {how: _start(sample_manifest, out, logs[how]) for how, out in outs.items()}  # both at once: half the wait
    for how, process in runs.items():
        latest = outs[how] / "checkpoints" / "latest"
        while process.poll() is None and not latest.exists():  # training (and saving) has begun
            time.sleep(0.1)
        # the whole group, the DataLoader worker too, as a terminal's Ctrl-C or a service manager's stop does
        os.killpg(process.pid, how)
    for how, process in runs.items():
        process.wait(timeout=600)  # a hang guard, not a speed limit
        logs[how].seek(0)
        stderr = logs[how].read()
        logs[how].close()
        assert process.returncode == 130, stderr[-3000:]
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
        lines = [line for line in stderr.splitlines() if "interrupted after step" in line]
        assert len(lines) == 1 and "run the same command to continue from it" in lines[0], stderr[-3000:]
        root = outs[how] / "checkpoints"
        named = root / (root / "latest").read_text()
        assert named.name in lines[0] and damage(named) is None
        assert not list(root.glob(".tmp-*"))
