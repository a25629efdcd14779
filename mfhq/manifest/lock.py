"""One writer per folder: a `lock` file naming the process that writes a run or manifest folder.

`mfhq extract` locks its run folder (mfhq.plan.RunLock), `mfhq cluster-sample` and `mfhq split`
their manifest folder, `mfhq stats` its report folder (mfhq.stats.staging.ReportLock), `mfhq
sample` its --out (mfhq.sample_out.SampleLock), and a folder of videos is locked by whoever
writes or measures it (mfhq.unfinished.VideosLock: `mfhq sample` its videos/, `mfhq bench` its
--root). The lock also carries a token: whoever writes on the holder's behalf (a
runner, a Ray actor that may outlive its driver) checks before its writes that the lock still
carries its driver's token, so a run taken over by a resumed one is never written twice at once.
It records what holds the folder (the kind of folder, the command), so a refusal names the
holder as it is, whatever the refused command meant to make of the folder.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path

from mfhq.errors import MfhqError

log = logging.getLogger(__name__)
LOCK = "lock"
CLAIM = ".lock-takeover"  # + "-<digest of the stale lock>-<n>": who may remove that lock


class FolderInUse(MfhqError, RuntimeError):
    """Another process holds the folder's lock."""


class NotOwner(MfhqError, RuntimeError):
    """The folder's lock no longer names the process this writer works for: it must not write."""


def read_holder(folder: Path) -> dict:
    """The lock's content ({} when there is none, or it is half made)."""
    return _holder(Path(folder) / LOCK)


def _holder(path: Path) -> dict:
    """A lock or takeover claim's {"pid", "host", ...} ({} when missing or unreadable)."""
    return _parse(_content(path) or b"")


def _parse(content: bytes) -> dict:
    try:
        holder = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _content(path: Path) -> bytes | None:
    """The file's bytes; None when it is gone, b"" when it cannot be read (judged as unreadable)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return b""


def check_owner(folder: Path, token: str | None, what: str) -> None:
    """Raise NotOwner unless the folder's lock carries `token` (None: nothing to check)."""
    if token is None:
        return
    holder = read_holder(folder)
    if holder.get("token") != token:
        now = (f"pid {holder.get('pid')} on host {holder.get('host')} holds it now" if holder
               else "nobody holds it now")
        raise NotOwner(f"{folder}: the lock no longer names the run this process writes for ({now}); "
                       f"{what} is left to the run that holds the lock")


class FolderLock:
    """`FOLDER/lock`: {"pid", "host", "since", "token", "what", "command"} of the process writing
    the folder (`what` and `command`: a class's, or the ones given).

    Created with a hard link from a complete temporary file, so the lock either exists whole or
    not at all. A lock left by a dead process on this host is taken over (by at most one of the
    processes that find it at once: `_remove_stale`); a lock held by another host cannot be
    checked, so it is refused with its holder named.
    """

    what = "folder"  # the kind of folder the holder writes, as a refusal names it
    command = ""     # the command that holds it ("": unsaid)
    error: type[Exception] = FolderInUse

    def __init__(self, folder: Path, command: str | None = None, what: str | None = None):
        self.folder = Path(folder)
        self.command = self.command if command is None else command
        self.what = what or self.what
        self.path = self.folder / LOCK
        self.held = False
        self.token = uuid.uuid4().hex

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "token": self.token, "what": self.what, "command": self.command}
        tmp = self.path.with_name(f".tmp-lock-{self.token}")  # per taker: threads of one process share a pid
        tmp.write_text(json.dumps(me))
        try:
            for _ in range(3):
                try:
                    os.link(tmp, self.path)
                    self.held = True
                    return
                except FileExistsError:
                    judged = _content(self.path)
                    if judged is None:  # released meanwhile
                        continue
                    holder = _parse(judged)
                    if holder and not _stale(holder):
                        raise self._in_use(holder, "in use by")
                    log.warning("%s: taking over a stale lock (%s)", self.path, holder or "unreadable")
                    taker = _remove_stale(self.path, judged, tmp)
                    if taker:  # another process is taking it over right now: the folder is its
                        raise self._in_use(taker, "being taken over (its lock was stale) by")
            raise self.error(f"{self.path}: could not take the lock (another process keeps taking it)")
        finally:
            tmp.unlink(missing_ok=True)

    def _in_use(self, holder: dict, how: str) -> Exception:
        """The refusal, naming the holder by its own lock: a lock of an older mfhq, which does not
        say what holds it, is named "the folder"."""
        command = f"{holder['command']}, " if holder.get("command") else ""
        return self.error(f"{self.path}: the {holder.get('what') or 'folder'} is {how} pid {holder.get('pid')} on host "
                          f"{holder.get('host')} ({command}since {holder.get('since')}); wait for it to finish, or, "
                          "if that process is gone, delete the lock file")

    def release(self) -> None:
        if self.held:
            if read_holder(self.folder).get("token") == self.token:  # never another's lock
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holder_alive(holder: dict) -> bool:
    """Whether a lock's holder may still be writing: a live (or unreaped-but-not-exited) process
    on this host, or any holder on another host (which cannot be checked from here)."""
    return bool(holder) and not _stale(holder)


def _stale(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder.get("pid")), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, TypeError, ValueError):
        return not isinstance(holder.get("pid"), int)
    return _zombie(int(holder["pid"]))


def _zombie(pid: int) -> bool:
    """A process that has exited but whose parent has not reaped it yet (a container whose first
    process never reaps, or a parent still busy) answers kill(pid, 0) though it will never write
    again. Linux says so in /proc; elsewhere it is taken as alive."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def _remove_stale(lock: Path, judged: bytes, me: Path) -> dict:
    """Remove `lock` if it still holds `judged` (a stale lock) and this taker wins the right to;
    {} then, else the live taker that won it.

    Of the takers that judged it stale at once, one wins: each hard-links its own `me` file to a
    claim named after the stale content, and a link fails where the name exists, atomically on
    local and network file systems. No one removes that lock without its claim, so the winner
    that still finds `judged` there removes that very lock, never one a faster taker put there
    meanwhile (unlinking whatever is there would let two takers both hold the lock). A claim
    whose claimer died mid-takeover gives the turn to the next number. Once the stale lock is
    gone its claims mean nothing (none can find it again), so the winner removes them all.
    """
    stem = f"{CLAIM}-{hashlib.sha256(judged).hexdigest()[:16]}"
    for n in itertools.count():  # ends: each step passes an existing claim of a dead claimer
        claim = lock.with_name(f"{stem}-{n}")
        try:
            os.link(me, claim)
            break
        except FileExistsError:
            taker = _holder(claim)
            if not _stale(taker):  # a live taker is at it ({}: its claim went as it finished)
                return taker
    if _content(lock) == judged:
        lock.unlink()
    for claim in lock.parent.glob(f"{stem}-*"):
        claim.unlink(missing_ok=True)
    return {}
