"""Stops a local Ray instance that a driver started for itself, once the driver is gone, however
it went (returned, Ctrl-C, kill -9).

Ray ties its head processes to the driver (the kernel kills them with it), but not what they
start: after `kill -9` of a driver, actors in the middle of a shard, their worker processes and
Ray's agents were seen to stay (about 2 GB), and the actors went on writing shards. The driver
starts this small process before Ray, holding the write end of its stdin. The pipe closes when
the driver exits or dies; this process then kills what belonged to the instance, known two ways:
- the instance's token in the environment: the driver sets it just before it starts Ray, so
  Ray's processes and all they start inherit it, and nothing else has it. Not enough alone: a
  process that renames itself (Ray's agents and workers call setproctitle) may overwrite part of
  the memory /proc shows as its environment, and the raylet passes the environment on in hash
  order, so the token was sometimes gone from a DashboardAgent (a CI failure);
- the process tree, looked at every POLL_S while the driver lives: each of the driver's
  descendants that carries the token (Ray's head processes: raylet, GCS), and everything below
  them, is remembered by pid and start time (a reused pid is never taken for it); at the end
  whatever is below a remembered process is taken too, whatever its parent is by then. Nothing
  else the driver started is touched (a notebook's own child processes, say).

Run as a script (`python ray_reaper.py TOKEN DRIVER_PID`): it imports nothing of mfhq, so it
starts at once. Linux only (it reads /proc); elsewhere it finds nothing and exits.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time

ENV = "MFHQ_RAY_INSTANCE"
POLL_S = 0.5  # a look reads every /proc/PID/stat: about 7 us of CPU a process on the 2-core machine


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time in clock ticks) of every process this user can see."""
    table = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()  # after the name, which may hold spaces
        except OSError:  # gone meanwhile
            continue
        table[int(entry)] = (int(fields[1]), fields[19].decode())
    return table


def descendants(roots: set[int], table: dict[int, tuple[int, str]]) -> set[int]:
    """Every process below one of roots in table (roots not included)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found - roots


def carriers(token: str, pids) -> set[int]:
    """Those of pids whose environment, as /proc shows it, holds ENV=token."""
    needle = f"{ENV}={token}".encode()
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    found.add(pid)
        except OSError:  # gone, or another user's
            continue
    return found


def alive(known: dict[int, str], table: dict[int, tuple[int, str]]) -> set[int]:
    """The remembered processes still running (the same pid with the same start time)."""
    return {pid for pid, start in known.items() if pid in table and table[pid][1] == start}


def watch(token: str, driver: int, known: dict[int, str]) -> None:
    """Until the driver closes the pipe or dies, remember the instance's processes (pid -> start)."""
    stdin = sys.stdin.buffer
    while True:
        table = process_table()
        roots = alive(known, table) | carriers(token, descendants({driver}, table) - known.keys())
        known.update((pid, table[pid][1]) for pid in roots | descendants(roots, table))
        ready, _, _ = select.select([stdin], [], [], POLL_S)
        if ready and not os.read(stdin.fileno(), 1 << 16):
            return


def instance(token: str, known: dict[int, str], spare: set[int]) -> set[int]:
    """The processes of the instance alive now: remembered ones, token carriers, and all below them."""
    table = process_table()
    ours = alive(known, table) | carriers(token, table.keys() - spare)
    return (ours | descendants(ours, table)) - spare


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the driver, which stops Ray itself
    token, driver = argv[1], int(argv[2])
    known: dict[int, str] = {}
    watch(token, driver, known)
    spare = {os.getpid(), driver}
    quiet = 0
    for _ in range(300):  # a process may start another while it is being killed
        pids = instance(token, known, spare)
        if not pids:
            # an agent Ray was starting as its parent died can appear a moment later: done only
            # after three empty looks in a row
            quiet += 1
            if quiet == 3:
                return 0
        else:
            quiet = 0
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
