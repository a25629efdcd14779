"""The local executor: worker processes under a watchdog.

Each worker loads the models once and takes one clip at a time. The parent watches every
worker: a decode call that runs past decode.timeout_s, or a clip past run.clip_timeout_s, gets
the worker killed and the clip a `timeout` row; a worker that dies (a native crash in a
decoder) gives its clip a `crashed` row. Either way a fresh worker takes its place and the
run goes on. decord can loop forever in native code holding the GIL, so only a process
boundary can bound it: no thread-based timeout would work.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Callable, Iterable

from mfhq.config import PipelineConfig
from mfhq.executors.worker import worker_main
from mfhq.records import Clip, empty_clip_row

log = logging.getLogger(__name__)


class ExecutorError(RuntimeError):
    """The run cannot go on (a worker cannot load its models); the message says why."""


@dataclass
class ClipOutcome:
    clip: Clip
    faces: list[dict]
    row: dict


class _Worker:
    def __init__(self, ctx, cfg: PipelineConfig, run_dir: str, models_dir: str | None):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker_main, args=(child, cfg.to_dict(), run_dir, models_dir), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.clip: Clip | None = None
        self.phase = None
        self.phase_since = self.clip_since = 0.0

    def assign(self, clip: Clip) -> None:
        self.clip, self.phase = clip, "start"
        self.clip_since = self.phase_since = time.monotonic()
        self.conn.send(("clip", clip))

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()


class LocalExecutor:
    def __init__(self, cfg: PipelineConfig, run_dir: str, models_dir: str | None = None):
        self.cfg = cfg
        self.run_dir = str(run_dir)
        self.models_dir = str(models_dir) if models_dir else None
        self.ctx = mp.get_context("spawn")  # fork would copy model state and threads
        self.provenance = "unknown"

    def _spawn(self) -> _Worker:
        return _Worker(self.ctx, self.cfg, self.run_dir, self.models_dir)

    def run(self, clips: Iterable[Clip], on_result: Callable[[ClipOutcome], None]) -> None:
        queue = deque(clips)
        if not queue:
            return
        workers = [self._spawn() for _ in range(max(1, min(self.cfg.run.workers, len(queue))))]
        in_flight = 0
        try:
            while queue or in_flight:
                for worker in workers:
                    if worker.ready and worker.clip is None and queue:
                        worker.assign(queue.popleft())
                        in_flight += 1
                conns = [w.conn for w in workers] + [w.process.sentinel for w in workers]
                for ready in wait(conns, timeout=0.5):
                    worker = next((w for w in workers if ready in (w.conn, w.process.sentinel)), None)
                    if worker is None:
                        continue
                    in_flight -= self._handle(worker, ready, on_result)
                for index, worker in enumerate(workers):
                    if not worker.ready and not worker.process.is_alive():
                        raise ExecutorError(f"a worker died while loading models (exit code {worker.process.exitcode})")
                    if self._overdue(worker, on_result):
                        in_flight -= 1
                    elif worker.process.is_alive():
                        continue
                    elif worker.clip is not None:  # died between wait() and here
                        self._fail(worker, "crashed", self._death_reason(worker), on_result)
                        in_flight -= 1
                    worker.kill()
                    workers[index] = self._spawn()
        finally:
            for worker in workers:
                try:
                    worker.conn.send(("stop",))
                except (BrokenPipeError, OSError):
                    pass
                worker.process.join(timeout=5)
                worker.kill()

    def _handle(self, worker: _Worker, ready, on_result) -> int:
        """Process one readable event; returns 1 when a clip finished."""
        if ready is worker.process.sentinel:
            if worker.clip is None:
                if not worker.ready:
                    raise ExecutorError(f"a worker died while loading models (exit code {worker.process.exitcode})")
                return 0
            self._fail(worker, "crashed", self._death_reason(worker), on_result)
            return 1
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            return 0  # the sentinel reports the death
        kind = message[0]
        if kind == "fatal":
            raise ExecutorError(message[1])
        if kind == "ready":
            worker.ready, self.provenance = True, message[1]
        elif kind == "phase":
            worker.phase, worker.phase_since = message[2], time.monotonic()
        elif kind == "result":
            clip, worker.clip = worker.clip, None
            on_result(ClipOutcome(clip, message[2], message[3]))
            return 1
        return 0

    def _overdue(self, worker: _Worker, on_result) -> bool:
        if worker.clip is None:
            return False
        now = time.monotonic()
        limits = self.cfg.decode.timeout_s, self.cfg.run.clip_timeout_s
        if worker.phase in ("decode", "start") and now - worker.phase_since > limits[0]:
            reason = f"{worker.clip.video_path}: decoding ran past the {limits[0]:g} s watchdog"
        elif now - worker.clip_since > limits[1]:
            reason = f"{worker.clip.video_path}: the clip ran past the {limits[1]:g} s watchdog"
        else:
            return False
        log.warning(reason)
        self._fail(worker, "timeout", reason, on_result)
        return True

    def _death_reason(self, worker: _Worker) -> str:
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"{worker.clip.video_path}: the worker died ({how}) during {worker.phase}"

    def _fail(self, worker: _Worker, status: str, reason: str, on_result) -> None:
        clip, worker.clip = worker.clip, None
        on_result(ClipOutcome(clip, [], empty_clip_row(clip, status, reason, self.provenance)))
