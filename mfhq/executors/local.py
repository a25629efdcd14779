"""The local executor (the default): `run.workers` runner processes on this machine.

Each runner takes one shard at a time and calls run_shard, which owns the shard's files and
processes its clips in a watched worker (watchdog.py: a hang -> `timeout`, a native crash ->
`crashed`). A runner that dies (killed, out of memory) has its shard run again by a fresh one:
the shard had no marker, so nothing of it counts until it is written whole.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
from collections import deque
from multiprocessing.connection import wait

from mfhq.config import PipelineConfig
from mfhq.executors.base import DiskFull, ExecutorError

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # a shard whose runner dies this often is not a passing problem


def runner_main(conn, cfg_dict: dict, run_dir: str, models_dir: str | None, verbose: bool) -> None:
    from mfhq.executors.worker import _quiet_process

    _quiet_process()
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from mfhq.config import config_from_dict
    from mfhq.shard import close_workers, run_shard

    cfg = config_from_dict(cfg_dict)
    try:
        while True:
            message = conn.recv()
            if message[0] == "stop":
                return
            try:
                conn.send(("stats", run_shard(message[1], run_dir, cfg, models_dir)))
            except DiskFull as exc:
                conn.send(("diskfull", str(exc)))
            except ExecutorError as exc:
                conn.send(("fatal", str(exc)))
            except Exception as exc:  # a bug: say which shard, stop the run
                logging.getLogger(__name__).exception("shard %s failed", message[1].id)
                conn.send(("fatal", f"shard {message[1].id}: {type(exc).__name__}: {exc}"))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the driver is gone
    finally:
        close_workers()


class _Runner:
    def __init__(self, ctx, cfg: PipelineConfig, run_dir: str, models_dir: str | None):
        self.conn, child = ctx.Pipe()
        verbose = logging.getLogger("mfhq").getEffectiveLevel() <= logging.DEBUG
        # Not a daemon: a runner has a worker child of its own. It still dies with the driver
        # (PR_SET_PDEATHSIG in _quiet_process).
        self.process = ctx.Process(target=runner_main, args=(child, cfg.to_dict(), run_dir, models_dir, verbose))
        self.process.start()
        child.close()
        self.shard = None

    def stop(self, wait_s: float) -> None:
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=wait_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=10)
        self.conn.close()


class LocalExecutor:
    def __init__(self, cfg: PipelineConfig, run_dir: str, models_dir: str | None = None):
        self.cfg, self.run_dir = cfg, str(run_dir)
        self.models_dir = str(models_dir) if models_dir else None
        self.ctx = mp.get_context("spawn")  # fork would copy model state and threads
        self.runners: list[_Runner] = []

    def _spawn(self) -> _Runner:
        return _Runner(self.ctx, self.cfg, self.run_dir, self.models_dir)

    def run(self, shards, on_stats) -> None:
        queue = deque(shards)
        attempts: dict[str, int] = {}
        self.runners = [self._spawn() for _ in range(max(1, min(self.cfg.run.workers, len(queue))))] if queue else []
        while queue or any(r.shard for r in self.runners):
            for runner in self.runners:
                if runner.shard is None and queue:
                    runner.shard = queue.popleft()
                    runner.conn.send(("shard", runner.shard))
            wait([r.conn for r in self.runners] + [r.process.sentinel for r in self.runners], timeout=1.0)
            for index, runner in enumerate(self.runners):
                while runner.shard is not None and runner.conn.poll():
                    try:
                        kind, payload = runner.conn.recv()
                    except (EOFError, OSError):
                        break
                    if kind == "diskfull":
                        raise DiskFull(payload)
                    if kind == "fatal":
                        raise ExecutorError(payload)
                    runner.shard = None
                    on_stats(payload)
                if runner.process.is_alive():
                    continue
                if runner.shard is not None:
                    shard, code = runner.shard, runner.process.exitcode
                    attempts[shard.id] = attempts.get(shard.id, 0) + 1
                    if attempts[shard.id] >= MAX_ATTEMPTS:
                        raise ExecutorError(f"shard {shard.id}: its runner died {MAX_ATTEMPTS} times (last exit code {code})")
                    log.warning("shard %s: its runner died (exit code %s); running the shard again", shard.id, code)
                    self._cleanup(shard)
                    queue.appendleft(shard)
                runner.shard = None
                runner.stop(0)
                self.runners[index] = self._spawn()

    def _cleanup(self, shard) -> None:
        from pathlib import Path

        from mfhq.shard import remove_temp_files

        remove_temp_files(Path(self.run_dir), shard)

    def close(self) -> None:
        """Stop the runners; shards in flight stay pending (no marker) and lose their temp files."""
        for runner in self.runners:
            runner.stop(5 if runner.shard is None else 0)
        for runner in self.runners:
            if runner.shard is not None:
                self._cleanup(runner.shard)
        self.runners = []
