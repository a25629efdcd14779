"""What a clip row records of the video file it was read from, and whether the file on disk is
still that file.

A re-run of extract leaves finished clips alone. A video replaced under the run since (a download
cut short and fetched again, a re-encode, another file under the same name) would then keep rows
that describe the old file, and `materialize` would cut crops from the new one. So each clip row
records the file's size, modification time and a digest of its size, first and last 64 KiB
(`identity`); a re-run compares them with the file now (`difference`) and names the clips whose
video changed; `extract --retry changed` extracts them again.

Size and modification time are the cheap test (one stat per file, as make and rsync do). A file
whose time alone differs (copied without its times, touched) is read at both ends before it is
called changed: the digest tells a copy from a rewrite of the same size. A change inside the file
that keeps its size and both ends is not seen (hashing every video in full on each re-run would
read the whole dataset again).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from stat import S_ISREG

END_BYTES = 64 * 1024
FIELDS = ("video_bytes", "video_mtime_ns", "video_digest")
UNKNOWN = dict.fromkeys(FIELDS)  # no file read (missing, a source problem) or a run older than run schema 8


def identity(path: Path | str) -> dict:
    """The clip row's fields for the file at `path`, or nulls where there is no readable file."""
    try:
        stat = os.stat(path)
        if not S_ISREG(stat.st_mode):
            return dict(UNKNOWN)
        return {"video_bytes": stat.st_size, "video_mtime_ns": stat.st_mtime_ns, "video_digest": _digest(path, stat.st_size)}
    except OSError:
        return dict(UNKNOWN)


def _digest(path: Path | str, size: int) -> str:
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as handle:
        digest.update(handle.read(END_BYTES))
        if size > END_BYTES:
            handle.seek(max(END_BYTES, size - END_BYTES))
            digest.update(handle.read(END_BYTES))
    return digest.hexdigest()


def difference(recorded: dict, path: Path | str) -> str | None:
    """How the file at `path` differs from the one a clip row recorded, in words; None when it is
    the same file, when the row recorded none (an older run, a clip never read) or when the file
    is gone (a re-run makes no row for a video it cannot read: a `--retry` would say `missing`)."""
    if recorded.get("video_bytes") is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    if stat.st_size != recorded["video_bytes"]:
        return f"{path}: {recorded['video_bytes']} bytes when extracted, {stat.st_size} now"
    if stat.st_mtime_ns == recorded["video_mtime_ns"]:
        return None
    try:
        same = _digest(path, stat.st_size) == recorded["video_digest"]
    except OSError as exc:
        return f"{path}: modified since it was extracted, and unreadable now ({exc})"
    return None if same else f"{path}: same size, other content at its start or end (modified since it was extracted)"
