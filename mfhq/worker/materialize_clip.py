"""The sampled faces of one clip made into crop and mask files (`mfhq materialize`).

Runs inside the watched worker process, as ClipProcessor does for extract, so a decoder that
hangs or crashes costs one clip. A clip arrives as a Clip record whose `extra` holds the decoder
extract used (`decoder`) and the faces to make (`faces`: frame_index, face_index, landmarks,
landmarks68, crop_digest, crop_path, mask_path, from the run's faces/ rows). Only their frames
are decoded; each crop is warped from the frame by the same transform of the same stored
landmarks as in extract, so its pixels are extract's, which `crop_digest` checks; parsing and
the image files are the one pass's own code (ParsingStage, mfhq.worker.images).
"""
from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from mfhq.align import alignment_transform, warp
from mfhq.config import PipelineConfig
from mfhq.decode import ClipDecoder, DecodeError
from mfhq.manifest.io import is_disk_full
from mfhq.records import Clip, ClipRow, Status
from mfhq.stages.base import ClipState, FaceBatch
from mfhq.stages.crop import ParsingStage
from mfhq.worker.images import crop_digest, write_image, write_mask

log = logging.getLogger(__name__)
BUILT_IN_READERS = ("pyav", "decord")


class MaterializeProcessor:
    """Loads the parsing model once; writes the crops and masks of the faces each clip names."""

    def __init__(self, cfg: PipelineConfig, run_dir: Path, models_dir=None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.parsing = ParsingStage(cfg.parsing, models_dir=models_dir, device=cfg.run.device)
        self.loading: str | None = None

    def setup(self) -> None:
        self.loading = f"parsing model {self.parsing.backend.name}"
        self.parsing.setup()
        self.loading = None
        self.provenance = self.parsing.provenance

    def process_many(self, clips: list[Clip], on_phase, on_result, read_across: bool = False) -> None:
        """on_result(clip, [{crop_path, mask_path, identical}], status row); raises only for a full disk.
        (read_across is extract's: materialize reads only a few frames of each clip, in line.)"""
        for clip in clips:
            on_result(clip, *self.process(clip, lambda phase, key=clip.key: on_phase(key, phase)))

    def process(self, clip: Clip, on_phase=lambda phase: None) -> tuple[list[dict], dict]:
        path = Path(clip.video_path)
        if not path.is_file():
            return [], ClipRow.failed(clip, Status.MISSING, f"{path}: no such file", self.provenance)
        by_frame: dict[int, list[dict]] = defaultdict(list)
        for face in sorted(clip.extra["faces"], key=lambda f: (f["frame_index"], f["face_index"])):
            by_frame[int(face["frame_index"])].append(face)
        decoder = ClipDecoder(self._decode_config(clip.extra.get("decoder")))
        done: list[dict] = []
        try:
            on_phase("open")  # bounded as a decode, on its own clock (watchdog.py)
            info = decoder.open(path)
            moved = _moved(clip, info)
            if moved:
                return [], ClipRow.failed(clip, Status.DECODE_ERROR, moved, self.provenance)
            on_phase("decode")
            for chunk in decoder.chunks(path, sorted(by_frame)):
                on_phase("process")
                done += self._chunk(clip, chunk.indices[: len(chunk.frames)], chunk.frames, by_frame, info.fps)
                chunk = None
                on_phase("decode")
        except DecodeError as exc:
            return [], ClipRow.failed(clip, Status.DECODE_ERROR, str(exc), self.provenance)
        except Exception as exc:
            if is_disk_full(exc):
                raise
            log.error("clip %s failed", clip.key, exc_info=exc)
            return [], ClipRow.failed(clip, Status.ERROR, f"{path}: {type(exc).__name__}: {exc}", self.provenance)
        finally:
            decoder.close()
        missing = sum(len(faces) for faces in by_frame.values()) - len(done)
        if missing:  # the video ends before frames extract read
            return [], ClipRow.failed(clip, Status.DECODE_ERROR, f"{path}: {missing} sampled face(s) on frames "
                                      "that could not be read again", self.provenance)
        return done, {"status": Status.OK, "reason": None}

    def _decode_config(self, decoder: str | None):
        """The reader extract ended with, first: another reader may convert colours differently."""
        if self.cfg.decode.backend == "auto" and decoder in BUILT_IN_READERS:
            return dataclasses.replace(self.cfg.decode, backend=decoder)
        return self.cfg.decode

    def _chunk(self, clip: Clip, indices: list[int], frames: np.ndarray, by_frame: dict, fps: float) -> list[dict]:
        """The crops of the faces on these frames, their masks in one parsing call, the files."""
        chosen = [(pos, face) for pos, index in enumerate(indices) for face in by_frame.get(int(index), [])]
        if not chosen:
            return []
        align, n = self.cfg.align, len(chosen)
        batch = FaceBatch(clip, np.asarray(indices), frames, fps, ClipState())
        batch.frame_pos = np.array([pos for pos, _ in chosen])
        batch.face_index = np.array([face["face_index"] for _, face in chosen])
        batch.scores = np.zeros(n, np.float32)
        batch.landmarks = np.array([face["landmarks"] for _, face in chosen], np.float32).reshape(n, 5, 2)
        batch.landmarks68 = np.stack([_points68(face) for _, face in chosen])
        batch.drop_reason = [None] * n
        batch.transforms = np.zeros((n, 2, 3), np.float64)
        for i, (pos, _) in enumerate(chosen):  # as AlignStage: the same float32 points, the same warp
            batch.transforms[i] = alignment_transform(batch.landmarks[i], align.template, align.size)
            batch.crops[i] = warp(frames[pos], batch.transforms[i], align.size)
        self.parsing.call_many([batch])
        done = []
        for i, (_, face) in enumerate(chosen):
            write_image(self.run_dir, face["crop_path"], batch.crops[i], align.jpeg_quality)
            write_mask(self.run_dir, face["mask_path"], batch.masks[i])
            done.append({"crop_path": face["crop_path"], "mask_path": face["mask_path"],
                         "identical": crop_digest(batch.crops[i]) == face["crop_digest"]})
        return done


def _moved(clip: Clip, info) -> str | None:
    """Why the frames read now are not those extract found the faces on, where their size says
    so: the landmarks would cut crops elsewhere. An mfhq before 2026-12-06 read non-square pixels
    as stored, where this one resamples them (decode_shown.py); a file replaced since is the other
    way. The row's size is unknown (None) in a plan made without it."""
    size = tuple(clip.extra.get("size") or ())
    if not size or None in size or size == (info.width, info.height):
        return None
    return (f"{clip.video_path}: read at {info.width}x{info.height} now, {size[0]}x{size[1]} when extracted (an "
            "earlier mfhq read non-square pixels as stored, or the file changed since): its faces' landmarks are "
            "not in these frames' pixels, so no crop is made; extract the clip again (the run's `mfhq extract` "
            "command does so for a file read as stored, with `--retry changed` for a changed one), then `mfhq "
            "cluster-sample` and `mfhq materialize`")


def _points68(face: dict) -> np.ndarray:
    points = face.get("landmarks68")
    if points is None:
        return np.full((68, 2), np.nan, np.float32)
    return np.asarray(points, np.float32).reshape(68, 2)
