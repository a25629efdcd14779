"""Stops a local Ray instance that a driver started for itself, once the driver is gone, however
it went (returned, Ctrl-C, kill -9).

Ray ties its head processes to the driver (the kernel kills them with it), but not what they
start: after `kill -9` of a driver, actors in the middle of a shard, their worker processes and
Ray's agents were seen to stay (about 2 GB), and the actors went on writing shards. The driver
starts this small process before Ray, holding the write end of its stdin. The pipe closes when
the driver exits or dies; this process then kills every process whose environment carries the
instance's token: the driver sets it just before it starts Ray, so Ray's processes and all they
start inherit it, and nothing else has it.

Run as a script (`python ray_reaper.py TOKEN DRIVER_PID`): it imports nothing of mfhq, so it
starts at once. Linux only (it reads /proc); elsewhere it finds nothing and exits.
"""
from __future__ import annotations

import os
import signal
import sys
import time

ENV = "MFHQ_RAY_INSTANCE"


def carriers(token: str, spare: set[int]) -> list[int]:
    """The processes of this user whose environment holds ENV=token."""
    needle = f"{ENV}={token}".encode()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) in spare:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # gone, or another user's
            continue
    return found


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the driver, which stops Ray itself
    token, driver = argv[1], int(argv[2])
    while sys.stdin.buffer.read(1 << 16):  # until the driver closes the pipe or dies
        pass
    spare = {os.getpid(), driver}
    quiet = 0
    for _ in range(300):  # a process may start another while it is being killed
        pids = carriers(token, spare)
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
