"""One clip through every stage: decode in chunks, run the stages, write crops, build rows.

This runs inside the worker process. It reports its phase ("decode" / "process") through a
callback so that the runner's watchdog can bound decoding separately from model work.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

from mfhq.config import PipelineConfig
from mfhq.decode import DecodeError
from mfhq.decode_ahead import DecodeAhead, reader_thread
from mfhq.manifest.io import is_disk_full
from mfhq.records import Clip, ClipRow, Drop, FaceMeasures, FaceRow, Status
from mfhq.stages.base import ClipState, FaceBatch
from mfhq.stages.crop import AlignStage, ParsingStage, PoseStage, QualityStage
from mfhq.stages.detect import DetectStage, EmbedStage
from mfhq.stages.identity import IdentityStage
from mfhq.worker.clip_open import ReadAcross, open_clip
from mfhq.worker.face_rows import dense_points, embedding_frame
from mfhq.worker.images import crop_digest, write_image, write_mask

log = logging.getLogger(__name__)
PhaseCallback = Callable[[str], None]


def build_stages(cfg: PipelineConfig, models_dir=None) -> list:
    """The stages extract runs; with align.crops: materialize, parsing is left to `mfhq materialize`."""
    device = cfg.run.device
    stages = [
        DetectStage(cfg.detect, models_dir, device),
        EmbedStage(cfg.embed, models_dir, device),
        IdentityStage(cfg.identity),
        AlignStage(cfg.align),
        PoseStage(cfg.pose, models_dir=models_dir, device=device),
        QualityStage(cfg.quality, models_dir=models_dir, device=device),
    ]
    if cfg.align.crops == "extract":
        stages.append(ParsingStage(cfg.parsing, models_dir=models_dir, device=device))
    return stages


def _model_of(stage) -> str | None:
    """A model stage's backend and weight files, e.g. "detector model yunet (face_detection_yunet.onnx)"."""
    backend = getattr(stage, "backend", None)
    if backend is None:
        return None
    files = ", ".join(w.name for w in backend.weight_files)
    return f"{backend.task} model {backend.name}" + (f" ({files})" if files else "")


class _ClipRun:
    """One clip in flight: its step generator, the batch it waits on, its stage timings."""

    def __init__(self, clip: Clip, steps):
        self.clip, self.steps = clip, steps
        self.timings: dict[str, float] = defaultdict(float)
        self.batch: FaceBatch | None = None
        self.result: tuple[list[dict], dict] | None = None
        self.error: Exception | None = None  # a stage failed on this clip's batch


class ClipProcessor:
    """Runs clips through the stages. A clip is a generator of decoded chunks (FaceBatch); the
    stages run outside it, so that with `batch_frames` > 0 chunks of several clips of a shard
    go through each model stage together (a GPU is not starved by short clips). Rows do not
    depend on the grouping: each clip's chunks still meet the stages in order."""

    def __init__(self, cfg: PipelineConfig, run_dir: Path, models_dir=None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.stages = build_stages(cfg, models_dir)
        # Gathering across clips pays only on an accelerator; on CPU one clip at a time holds less
        # memory, and a death among gathered clips costs the watchdog a run of each alone.
        self.batch_frames = cfg.run.gathered_frames()
        self.reads_ahead = cfg.run.reads_ahead()
        # One reader thread per worker: a clip's next chunks, then the next clip's opening.
        self.reader = reader_thread() if self.reads_ahead else None
        self.read_across = ReadAcross(self.reader, cfg.decode) if self.reads_ahead else None
        self.loading: str | None = None  # the model setup() is loading

    def setup(self) -> None:
        for stage in self.stages:
            self.loading = _model_of(stage)
            stage.setup()
        self.loading = None
        self.provenance = ";".join(s.provenance for s in self.stages if s.provenance not in ("identity",))

    def process(self, clip: Clip, on_phase: PhaseCallback = lambda phase: None) -> tuple[list[dict], dict]:
        """Returns (face rows, the clip's status row). Never raises for a bad clip."""
        out = []
        self.process_many([clip], lambda key, phase, *_: on_phase(phase), lambda c, faces, row: out.append((faces, row)))
        return out[0]

    def process_many(self, clips: list[Clip], on_phase, on_result, read_across: bool = True) -> None:
        """Each clip's (face rows, status row) goes to on_result(clip, faces, row) as soon as it is
        done; on_phase(clip key, phase, *other keys) feeds the watchdog: "open" | "decode" |
        "process" for what this thread does ("process" names every clip in the models together,
        so a death or hang there is never pinned on one of them); "open-ahead" as the reader
        thread opens the next clip, "read" | "read-done" around each of its reads (so it may be
        called from that thread, and for the clip after the one in process). read_across: on CPU
        with decode-ahead, read each clip's opening while the one before is in the models (the
        watchdog turns it off to run a clip alone). Raises only for a full disk, which must stop
        the run rather than become a row."""
        waiting = list(reversed(clips))
        active: list[_ClipRun] = []
        try:
            while waiting or active:
                # Gather chunks until the batch is full (one clip's chunk at a time on CPU).
                while waiting and (not active or sum(len(r.batch.frames) for r in active) < self.batch_frames):
                    clip = waiting.pop()
                    following = waiting[-1] if waiting and read_across and self.batch_frames == 0 else None
                    run = _ClipRun(clip, self._steps(clip, on_phase, following))
                    if self._advance(run, None):
                        active.append(run)
                    else:
                        on_result(clip, *run.result)
                if not active:
                    continue
                keys = [run.clip.key for run in active]
                on_phase(keys[0], "process", *keys[1:])
                self._run_stages(active, on_phase)
                for run in list(active):
                    if len(keys) > 1:  # the models are done: the rows written next are this clip's alone
                        on_phase(run.clip.key, "process")
                    if not self._advance(run, run.batch):
                        active.remove(run)
                        on_result(run.clip, *run.result)
        finally:
            if self.read_across:
                self.read_across.drop()

    def _advance(self, run: _ClipRun, batch) -> bool:
        """Send the processed batch into the clip's generator; False once the clip is finished."""
        try:
            if run.error is not None:
                run.steps.close()
                raise run.error
            run.batch = run.steps.send(batch)
            return True
        except StopIteration as stop:
            rows, row = stop.value
            if row.get("stage_seconds") is not None:
                row["stage_seconds"] = {k: round(v, 4) for k, v in {**run.timings, **row["stage_seconds"]}.items()}
        except Exception as exc:
            row = self._failure(run.clip, exc)
            rows = []
        run.result, run.batch = (rows, row), None
        return False

    def _run_stages(self, runs: list[_ClipRun], on_phase) -> None:
        before = [vars(r.batch.state).copy() for r in runs]  # stages replace a state's fields, never change them
        try:
            self._through(runs)
        except Exception as exc:
            if is_disk_full(exc):
                raise
            if len(runs) == 1:
                runs[0].error = exc
                return
            # A grouped call failed: redo each clip alone so only the clip at fault gets an
            # error row (a rare path: a stage bug on one clip's frames).
            for run, state in zip(runs, before):
                vars(run.batch.state).update(state)  # from where the grouped call began
                on_phase(run.clip.key, "process")  # alone: a death now is this clip's
                try:
                    self._through([run])
                except Exception as exc:
                    if is_disk_full(exc):
                        raise
                    run.error = exc

    def _through(self, runs: list[_ClipRun]) -> None:
        batches = [r.batch for r in runs]
        for stage in self.stages:
            started = time.perf_counter()
            batches = stage.call_many(batches)  # one clip's chunk or several: one code path
            spent = (time.perf_counter() - started) / len(runs)
            for run in runs:
                run.timings[stage.name] += spent
        for run, batch in zip(runs, batches):
            run.batch = batch

    def _failure(self, clip: Clip, exc: Exception) -> dict:
        if is_disk_full(exc):
            raise exc
        if isinstance(exc, DecodeError):
            return ClipRow.failed(clip, Status.DECODE_ERROR, str(exc), self.provenance)
        # A stage bug must not lose the rest of the run.
        log.error("clip %s failed", clip.key, exc_info=exc)
        return ClipRow.failed(clip, Status.ERROR, f"{clip.video_path}: {type(exc).__name__}: {exc}", self.provenance)

    def _steps(self, clip: Clip, on_phase, following: Clip | None = None):
        """Generator: yields each decoded chunk as a FaceBatch, receives it back through the
        stages, returns (face rows, clip row). on_phase(key, phase); `following`: the clip
        processed next, whose opening the reader thread reads once this clip's chunks are read."""
        timings: dict[str, float] = defaultdict(float)
        phase = lambda name: on_phase(clip.key, name)  # noqa: E731
        phase("open")  # probing the file: bounded as a decode, on its own clock (decord hangs there on some files)
        started = time.perf_counter()
        ahead = self.read_across.take(clip) if self.read_across else None
        opened = ahead.result() if ahead is not None else open_clip(clip, self.cfg.decode, self.provenance)
        timings["decode"] += time.perf_counter() - started
        if opened.failed is not None:
            return [], opened.failed
        clip, decoder, info, chunks, first = opened.clip, opened.decoder, opened.info, opened.chunks, opened.first
        opened.first = ahead = None  # the first chunk is `first`'s alone: let go of once it is processed
        try:
            rows, state, n_read, cut = [], ClipState(), 0, None
            if self.reads_ahead:
                then = None if following is None else lambda: self.read_across.start(
                    following, self.provenance, lambda name: on_phase(following.key, name))
                # One thread for a CPU worker's clips, in turn; a thread per clip gathered for a GPU.
                pool = self.reader if self.batch_frames == 0 else None
                chunks = DecodeAhead(chunks, lambda reading: phase("read" if reading else "read-done"), pool, then)
            while True:
                # "decode" here is the time the stages wait for frames: with decode_ahead, what
                # decoding costs beyond the models it overlaps.
                phase("decode")
                started = time.perf_counter()
                try:
                    chunk, first = first if first is not None else next(chunks, None), None
                except DecodeError as exc:
                    if not n_read:  # nothing read: the row of a clip that could not be read at all
                        raise
                    chunk, cut = None, exc  # part-way: the chunks read before are recorded below
                timings["decode"] += time.perf_counter() - started
                if chunk is None:
                    break
                n_read += len(chunk.frames)  # the frames delivered: fewer than asked where the stream ended
                batch = yield FaceBatch(clip, np.asarray(chunk.indices[: len(chunk.frames)]), chunk.frames, info.fps, state,
                                        closing=n_read == len(opened.indices))  # the clip's last sampled frame
                started = time.perf_counter()
                rows.extend(self._rows(batch, info))
                batch = chunk = None  # let go of the frames before the next read: two chunks held at most
                timings["write"] += time.perf_counter() - started
            if state.embed_held is not None:  # the stream ended early: the held frames' run (embed.every > 1) ends here
                rows.extend(self._rows((yield state.embed_held.clip_end()), info))
        finally:
            if isinstance(chunks, DecodeAhead):
                chunks.close()  # a read may still be in flight (the clip failed in a stage)
            decoder.close()
        if decoder.ended is not None and not n_read:  # not one sampled frame before the stream's end
            return [], ClipRow.failed(clip, Status.DECODE_ERROR, decoder.ended, self.provenance)
        if cut is not None:  # a half-read clip keeps no face (cluster-sample reads kept faces only); the
            # files of those faces go when the shard finishes (shard.keep_named_files)
            rows = [FaceRow.withdrawn(row, Drop.DECODE_ERROR) for row in rows]
        sampled = opened.indices if decoder.ended is None else opened.indices[:n_read]  # short where the stream ended
        return rows, self._clip_row(clip, rows, state, n_read, info, decoder, timings, sampled, cut)

    def _clip_row(self, clip, rows, state, n_read, info, decoder, timings, sampled, cut=None) -> dict:
        verified = {}
        if clip.annotations is not None and self.cfg.detect.use_source_annotations:
            # A checked frame where the detector found nothing counts as IoU 0.
            verified = dict(n_frames_detect_skipped=state.annotated_frames - state.verified_frames,
                            n_frames_verified=state.verified_frames,
                            annotation_iou=state.verified_iou_sum / state.verified_frames if state.verified_frames else None,
                            annotation_nme=state.verified_nme_sum / state.verified_matched if state.verified_matched else None)
        return ClipRow.processed(
            clip, rows, self.provenance, n_frames_read=n_read, ended=decoder.ended,
            duration_sec=info.sampled_span(sampled[0], sampled[-1], self.cfg.decode.fps) if len(sampled) else 0.0,
            fps=info.fps, width=info.width, height=info.height, decoder=decoder.reader.name if decoder.reader else None,
            stage_seconds={k: round(v, 4) for k, v in timings.items()}, recovered=decoder.errors,
            decode_error=None if cut is None else str(cut), shown=decoder.facts, **verified)

    def _rows(self, batch: FaceBatch, info) -> list[dict]:
        clip, align = batch.clip, self.cfg.align
        template = f"{align.template}{align.size}"
        rows = []
        for i in range(batch.n_faces):
            frame_index = int(batch.frame_indices[batch.frame_pos[i]])
            face = FaceMeasures(
                frame_index=frame_index, time_sec=info.time_of(frame_index), face_index=int(batch.face_index[i]),
                # measures as the models gave them: FaceRow makes "not measured" (NaN) NULL
                det_score=batch.scores[i], bbox=batch.boxes[i].tolist(),
                landmarks=batch.landmarks[i].reshape(-1).tolist(), face_size=batch.face_size[i],
                identity_similarity=batch.similarity[i],
                out_of_frame=None if batch.out_of_frame is None else batch.out_of_frame[i],
                yaw=batch.pose[i, 0], pitch=batch.pose[i, 1], roll=batch.pose[i, 2], quality=batch.quality[i],
                embedding=batch.embeddings[i].tolist() if batch.embeddings is not None else None,
                embedding_frame=embedding_frame(batch, i))
            if batch.drop_reason[i] is not None:
                rows.append(FaceRow.dropped(clip, face, batch.drop_reason[i], template, self.provenance))
                continue
            stem = f"{clip.source}/{clip.clip_id}/{frame_index:06d}_{face.face_index}"
            crop_path, mask_path = f"crops/{stem}.{align.crop_format}", f"masks/{stem}.png"
            if align.crops == "materialize":  # the paths `mfhq materialize` writes, if the face is sampled
                face = face._replace(crop_digest=crop_digest(batch.crops[i]), landmarks68=dense_points(batch, i))
            else:
                write_image(self.run_dir, crop_path, batch.crops[i], align.jpeg_quality)
                write_mask(self.run_dir, mask_path, batch.masks[i])
            rows.append(FaceRow.kept(clip, face, crop_path, mask_path, template, self.provenance))
        return rows

