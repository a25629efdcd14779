"""One writer per folder: a `lock` file naming the process that writes a run or manifest folder.

`mfhq extract` locks its run folder (mfhq.plan.RunLock), `mfhq cluster-sample` and `mfhq split`
their manifest folder. The lock also carries a token: whoever writes on the holder's behalf (a
runner, a Ray actor that may outlive its driver) checks before its writes that the lock still
carries its driver's token, so a run taken over by a resumed one is never written twice at once.
"""
from __future__ import annotations

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


class FolderInUse(MfhqError, RuntimeError):
    """Another process holds the folder's lock."""


class NotOwner(MfhqError, RuntimeError):
    """The folder's lock no longer names the process this writer works for: it must not write."""


def read_holder(folder: Path) -> dict:
    """The lock's content ({} when there is none, or it is half made)."""
    try:
        holder = json.loads((Path(folder) / LOCK).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


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
    """`FOLDER/lock`: {"pid", "host", "since", "token"} of the process writing the folder.

    Created with a hard link from a complete temporary file, so the lock either exists whole or
    not at all. A lock left by a dead process on this host is taken over; a lock held by another
    host cannot be checked, so it is refused with its holder named.
    """

    what = "folder"
    error: type[Exception] = FolderInUse

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.held = False
        self.token = uuid.uuid4().hex

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "token": self.token}
        tmp = self.path.with_name(f".tmp-lock-{os.getpid()}")
        tmp.write_text(json.dumps(me))
        try:
            for _ in range(3):
                try:
                    os.link(tmp, self.path)
                    self.held = True
                    return
                except FileExistsError:
                    holder = read_holder(self.folder)
                    if holder and not _stale(holder):
                        raise self.error(
                            f"{self.path}: the {self.what} is in use by pid {holder.get('pid')} on host "
                            f"{holder.get('host')} (since {holder.get('since')}); wait for it to finish, or, if "
                            "that process is gone, delete the lock file")
                    log.warning("%s: taking over a stale lock (%s)", self.path, holder or "unreadable")
                    self.path.unlink(missing_ok=True)
            raise self.error(f"{self.path}: could not take the lock (another process keeps taking it)")
        finally:
            tmp.unlink(missing_ok=True)

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


def _stale(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder.get("pid")), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, TypeError, ValueError):
        return not isinstance(holder.get("pid"), int)
    return False
