"""A stale lock is taken over by exactly one of the processes that find it at once.

The interleaving is forced at a real point: the "taking over a stale lock" warning is logged
after a taker judged the lock stale and before it acts, so a logging handler holds each taking
process there until all of them have judged it stale (the race a dead run's lock meets when
several `extract` or `cluster-sample` start on its folder together), then lets them on one
after another or all at once.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lock_taker import GUARD_S, take_in_rounds
from unreaped import unreaped_pid
from mfhq.manifest.lock import CLAIM, FolderInUse, FolderLock, holder_alive, read_holder

TAKERS, ROUNDS = 4, 6


@pytest.fixture(scope="module")
def dead_pid() -> int:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(gone.stdout)


def _stale_lock(folder: Path, pid: int) -> None:
    folder.mkdir()
    (folder / "lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": "then",
                                             "token": "dead"}))


@pytest.mark.parametrize("in_turn", [True, False], ids=["one-after-another", "all-at-once"])
def test_racing_takers_of_a_stale_lock_leave_exactly_one_holder(tmp_path, dead_pid, in_turn):
    folders = [tmp_path / f"round-{r}" for r in range(ROUNDS)]
    for folder in folders:
        _stale_lock(folder, dead_pid)
    ctx = mp.get_context("spawn")
    turns = [[ctx.Event() for _ in range(TAKERS)] for _ in folders]
    for round_turns in turns:
        round_turns[0].set()
    all_judged, round_over, results = ctx.Barrier(TAKERS), ctx.Barrier(TAKERS + 1), ctx.Queue()
    takers = [ctx.Process(target=take_in_rounds, args=(i, folders, in_turn, turns, all_judged, round_over, results))
              for i in range(TAKERS)]
    for taker in takers:
        taker.start()
    try:
        for round_, folder in enumerate(folders):
            outcomes = [results.get(timeout=GUARD_S) for _ in range(TAKERS)]
            holders = [token for _, _, held, token, _ in outcomes if held]
            assert len(holders) == 1, f"round {round_}: {len(holders)} takers believe they hold the lock"
            assert read_holder(folder)["token"] == holders[0]  # and the lock file names that one
            for _, _, held, _, error in outcomes:
                # the others are refused, naming the holder or the taker still at work
                assert held or re.match(rf"{folder}/lock: the folder is (in use|being taken over \(its lock was "
                                        rf"stale\)) by pid \d+ on host ", error), error
            # nothing left beside the lock: no temporary file, no takeover claim
            assert sorted(p.name for p in folder.iterdir()) == ["lock"]
            round_over.wait(GUARD_S)
    except BaseException:
        all_judged.abort()  # the takers stop at once, not after the guard
        round_over.abort()
        raise
    finally:
        for taker in takers:
            taker.join(GUARD_S)
            taker.kill()
    assert not any((folder / "lock").exists() for folder in folders)  # each holder released its lock


def _first_claim(folder: Path) -> Path:
    """The claim the first taker of the folder's stale lock makes: named after its content."""
    return folder / f"{CLAIM}-{hashlib.sha256((folder / 'lock').read_bytes()).hexdigest()[:16]}-0"


def test_a_claim_left_by_a_taker_that_died_mid_takeover_does_not_block_the_next(tmp_path, dead_pid, caplog):
    folder = tmp_path / "run"
    _stale_lock(folder, dead_pid)
    _first_claim(folder).write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname(), "token": "killed"}))
    with FolderLock(folder) as lock:
        assert read_holder(folder)["token"] == lock.token
        assert sorted(p.name for p in folder.iterdir()) == ["lock"]
    assert "taking over a stale lock" in caplog.text


def test_a_live_takeover_is_left_to_its_taker(tmp_path, dead_pid):
    """A claim whose taker lives (here: this process) means another taker is removing the stale
    lock right now: this one must not remove it too, and names that taker."""
    folder = tmp_path / "run"
    _stale_lock(folder, dead_pid)
    stale, claim = (folder / "lock").read_bytes(), _first_claim(folder)
    claim.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": "busy"}))
    with pytest.raises(FolderInUse, match=rf"{folder}/lock: the folder is being taken over \(its lock was stale\) "
                                          rf"by pid {os.getpid()} on host {socket.gethostname()}"):
        FolderLock(folder).acquire()
    assert (folder / "lock").read_bytes() == stale and claim.exists()


def test_a_lock_held_by_a_process_that_exited_unreaped_is_taken_over(tmp_path):
    """An exited process nobody has reaped yet (a zombie) still answers kill(pid, 0): its lock was
    judged live, so a killed run's folder read as "in use" until its parent reaped it."""
    with unreaped_pid() as pid:
        _stale_lock(tmp_path / "run", pid)
        with FolderLock(tmp_path / "run"):
            assert read_holder(tmp_path / "run")["pid"] == os.getpid()


def test_a_lock_held_on_another_host_is_refused_never_taken_over(tmp_path, dead_pid):
    """A folder on a shared disk, locked by a run on another machine: its pid means nothing here
    (that of a process gone from this host, here), so the lock cannot be judged stale and is left
    to its holder, who is named."""
    folder = tmp_path / "run"
    folder.mkdir()
    other = f"not-{socket.gethostname()}"
    (folder / "lock").write_text(json.dumps({"pid": dead_pid, "host": other, "since": "then", "token": "far"}))
    held = (folder / "lock").read_bytes()
    with pytest.raises(FolderInUse, match=re.escape(f"{folder}/lock: the folder is in use by pid {dead_pid} on host {other} ")):
        FolderLock(folder).acquire()
    assert (folder / "lock").read_bytes() == held and sorted(p.name for p in folder.iterdir()) == ["lock"]
    assert holder_alive(read_holder(folder))
