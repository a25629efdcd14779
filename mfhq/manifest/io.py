"""Atomic file output, shard completion markers, and a full disk told apart from other I/O errors.

Everything is written to a temporary file in the destination folder and renamed into place,
so a killed process leaves either the old file, the new file, or a stray `.tmp-*` file that
nothing reads. A shard's marker is written after all of its files: a shard without a marker is
redone in full on resume, which is what makes resumed runs equal to uninterrupted ones.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from mfhq.errors import MfhqError
from mfhq.manifest.schema import RUN_READABLE, RUN_SCHEMA_VERSION, SchemaVersionError, check_version

__all__ = ["DiskFull", "OutputError", "SchemaVersionError", "atomic_write_arrow", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_table", "check_output_dir", "check_schema_version", "file_digest", "fsync_folder", "is_disk_full", "read_table",
           "sha256_of", "ShardMarkers"]


class DiskFull(MfhqError, RuntimeError):
    """The disk of the run folder is full: the run stops, the shard in flight stays pending."""


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT, also from pyarrow and safetensors, whose errors carry the text but not the
    errno (safetensors' are not even OSErrors). The one test of both packages."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(text in str(exc) for text in ("No space left on device", "Disk quota exceeded"))


class OutputError(MfhqError, ValueError):
    """The output location cannot hold a run folder."""


def check_output_dir(out: Path, option: str = "--out", hint: str = "") -> None:
    """Refuse an output folder that is a file, lies under a file, or cannot be written (no
    permission, a read-only file system), before any work is done. The one check of both
    packages' output folders: omniid's commands give their `hint` and raise their own error type."""
    out = Path(out)
    tail = f"; {hint}" if hint else ""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{option} {out}: is a file, not a folder{tail or '; give a folder for the run'}")
    ancestor = out
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link: mkdir would fail on it
            raise OutputError(f"{option} {out}: {ancestor} is a broken symbolic link{tail}")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{option} {out}: {ancestor} is a file, so no folder can be made under it{tail}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        what = "the run folder" if ancestor == out else f"{ancestor}, where it would be made,"
        why = "is on a read-only file system" if _read_only(ancestor) else "is not writable by this user"
        raise OutputError(f"{option} {out}: {what} {why}{tail}")


def placed(path: Path | str, folder: Path | str) -> str | None:
    """"is" or "lies inside" where `path` is `folder` or lies under it (both resolved, so two
    spellings or a link meet), else None: how the output checks say one path sits in another."""
    at, there = Path(path).resolve(), Path(folder).resolve()
    return "is" if at == there else "lies inside" if there in at.parents else None


def first_names(names: list[str], shown: int = 3) -> str:
    """The first few of a folder's names for a message: 'a, b, c and 4 more'."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask can only set
    it, and setting it back is a race with other threads creating files)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: Path | str) -> None:
    """Give a file made by mkstemp (always 0600) the mode any tool's new file gets: 0666 less
    the umask. Outputs are shared with other users and jobs; a private temp mode must not leak
    into them through the rename."""
    os.chmod(path, 0o666 & ~current_umask())


def _temp_prefix(name: str) -> str:
    return f".tmp-{name}-"


def remove_stray_temps(folder: Path, names: list[str]) -> None:
    """The stray temporary files a killed atomic write of these files left in `folder`. For their
    next writer, holding the folder's lock: no write of them is under way."""
    for name in names:
        for tmp in Path(folder).glob(f"{_temp_prefix(name)}*"):
            tmp.unlink(missing_ok=True)


def _temp_path(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(dest.name), dir=dest.parent)
    os.close(fd)
    follow_umask(name)
    return Path(name)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    """Make a folder's entries (a rename, a removal) durable, where the file system allows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder
    finally:
        os.close(fd)


def atomic_write_bytes(dest: Path, data: bytes, durable: bool = True) -> None:
    """durable=False skips fsync: still never a partial file after a killed process (the rename
    is atomic), but after a power loss the file may be empty. Crops use it: an fsync per image
    costs more than encoding it, and markers/Parquet, which are fsynced, say what is done."""
    tmp = _temp_path(dest)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(dest: Path, content: Any) -> None:
    atomic_write_bytes(dest, json.dumps(content, indent=2, sort_keys=True, default=str).encode())


def atomic_write_arrow(dest: Path, table: pa.Table) -> int:
    """Write an Arrow table as one Parquet file (temp, fsync, rename); returns the row count."""
    tmp = _temp_path(dest)
    try:
        pq.write_table(table, tmp, compression="zstd")
        _fsync(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return table.num_rows


def atomic_write_table(dest: Path, rows: Iterable[dict], schema: pa.Schema) -> int:
    """Write rows as one Parquet file with an explicit schema; returns the row count."""
    return atomic_write_arrow(dest, pa.Table.from_pylist(list(rows), schema=schema))


_SHA256: dict[tuple, str] = {}  # (path, device, inode, size, mtime) -> sha256: each file state hashed once


def sha256_of(path: Path) -> str:
    """The file's sha256 (about 1 s per 650 MB), remembered for this state of the file."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


def file_digest(path: Path) -> dict:
    return {"bytes": os.stat(path).st_size, "sha256": sha256_of(path)}


def check_schema_version(path: Path, metadata: dict | None,
                         remedy: str = "re-run the stage that made it, or use the mfhq release that wrote it") -> str:
    """Refuse a run Parquet file (faces/, clips/) of a schema version this code cannot read;
    returns the version (older readable ones lack the columns RUN_READABLE names)."""
    return check_version(path, metadata, RUN_SCHEMA_VERSION, remedy, readable=RUN_READABLE)


def read_table(path: Path) -> pa.Table:
    """Read one of our Parquet files, refusing another schema version."""
    table = pq.read_table(path)
    check_schema_version(path, table.schema.metadata)
    return table


class ShardMarkers:
    """Completion markers of one run: `RUN/done/<shard_id>.json`, each a JSON object of the
    shard's counts, the provenance of its models and (since it was recorded) the fingerprint of
    the config it was made with. A marker's presence is what says the shard is done; its
    content is read only for these counts, so a marker that cannot be parsed still counts."""

    def __init__(self, run_dir: Path):
        self.folder = run_dir / "done"

    def path(self, shard_id: str) -> Path:
        return self.folder / f"{shard_id}.json"

    def is_done(self, shard_id: str) -> bool:
        return self.path(shard_id).is_file()

    def mark_done(self, shard_id: str, summary: dict) -> None:
        atomic_write_json(self.path(shard_id), summary)

    def unmark(self, shard_id: str) -> None:
        """Take a finished shard back to pending before any of its files is replaced (a retry):
        a stop part-way then leaves a shard that is redone in full, never a marker vouching for
        a mix of old and new files. The removal is synced before the caller writes anything."""
        self.path(shard_id).unlink(missing_ok=True)
        fsync_folder(self.folder)

    def done_ids(self) -> set[str]:
        if not self.folder.is_dir():
            return set()
        return {p.stem for p in self.folder.glob("*.json")}

    def read(self, shard_id: str) -> dict:
        """The marker's content; {} for a missing or unreadable one (markers of old runs were
        written the same way, so no field is guaranteed)."""
        try:
            content = json.loads(self.path(shard_id).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return {}
        return content if isinstance(content, dict) else {}

    def provenance(self) -> str | None:
        """The first model provenance a marker records (the run's, when the driver missed it)."""
        for shard_id in sorted(self.done_ids()):
            found = self.read(shard_id).get("provenance")
            if found not in (None, "none", "unknown"):
                return found
        return None

    def digest(self) -> str:
        """A hash of every marker's name and bytes: a shard finished or redone changes it."""
        digest = hashlib.sha256()
        for shard_id in sorted(self.done_ids(), key=lambda sid: self.path(sid).name):  # file-name order, as ever
            digest.update(f"{shard_id}.json".encode() + b"\0" + self.path(shard_id).read_bytes() + b"\0")
        return digest.hexdigest()[:16]
