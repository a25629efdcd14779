"""A re-run's one look at its finished clips: those a `--retry` status names, those whose
video changed since extract read it, and those an earlier mfhq read in stored pixels where
this one resamples them to square ones (decode_shown.py).

The clip rows record the file as read (mfhq.video_file). A re-run compares each finished clip's
video now with its row: `extract --retry changed` extracts those clips again, and without it
extract says how many changed and how, since their rows describe the old files. One stat per
video; a file whose time alone changed is read at both ends. Each finished shard's clip rows are
read once, for both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from mfhq import video_file
from mfhq.decode_shown import READ_AS_STORED

RETRY_CHANGED = "changed"  # the --retry word for these clips (beside the clip statuses)


@dataclass
class ChangedVideos:
    by_shard: dict[str, set[str]] = field(default_factory=dict)  # finished shard -> clip keys
    with_status: dict[str, set[str]] = field(default_factory=dict)  # finished shard -> keys with an asked status
    examples: list[str] = field(default_factory=list)            # how the first few changed, in words
    unchecked_shards: int = 0  # written before clip rows recorded their video (run schema 8)
    as_stored: dict[str, set[str]] = field(default_factory=dict)  # finished shard -> keys read as stored (READ_AS_STORED)

    @property
    def clips(self) -> int:
        return sum(len(keys) for keys in self.by_shard.values())

    def line(self) -> str:
        """The warning of a re-run that leaves them as they are."""
        return (f"{self.clips} finished clip(s) have a video that changed since extract read it "
                f"({'; '.join(self.examples)}{'; ...' if self.clips > len(self.examples) else ''}): their rows "
                f"describe the old file. Run the same command with --retry {RETRY_CHANGED} to extract them again")


def find_changed(run_dir: Path, shard_ids, by_key: dict, statuses=frozenset(), examples: int = 3) -> ChangedVideos:
    """The finished shards' clips whose video differs from what their row recorded, and those
    whose status is one of `statuses`. A clip is looked for where the source now puts it (a root
    moved with --force), else at its row's path."""
    found = ChangedVideos()
    seen: dict[tuple, str | None] = {}  # (path, what a row recorded) -> difference: clips cut from one video share it
    for sid in sorted(shard_ids):
        parquet = pq.ParquetFile(Path(run_dir) / "clips" / f"{sid}.parquet")
        recorded = "video_bytes" in parquet.schema_arrow.names
        found.unchecked_shards += not recorded
        said = ["reason"] if "reason" in parquet.schema_arrow.names else []
        columns = ["source", "clip_id", "status", *said, "video_path", *(video_file.FIELDS if recorded else ())]
        for row in parquet.read(columns=columns).to_pylist():
            key = f"{row['source']}/{row['clip_id']}"
            if row["status"] in statuses:
                found.with_status.setdefault(sid, set()).add(key)
            if READ_AS_STORED in (row.get("reason") or ""):
                found.as_stored.setdefault(sid, set()).add(key)
            if not recorded:
                continue
            path = str(getattr(by_key.get(key), "video_path", None) or row["video_path"])
            look = (path, *(row[name] for name in video_file.FIELDS))
            if look not in seen:
                seen[look] = video_file.difference(row, path)
            if seen[look] is not None:
                found.by_shard.setdefault(sid, set()).add(key)
                if len(found.examples) < examples:  # the source may now name another file (VFHQ: a raw video for its cut)
                    moved = f" (extracted from {row['video_path']})" if path != row["video_path"] else ""
                    found.examples.append(seen[look] + moved)
    return found
