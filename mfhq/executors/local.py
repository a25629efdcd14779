"""The local executor (the default): `run.workers` runner processes on this machine.

Each runner takes one shard at a time and calls run_shard, which owns the shard's files and runs
its clips in the runner's watched worker process (mfhq.worker: a hang -> `timeout`, a native
crash -> `crashed`). A runner that dies (killed, out of memory) is replaced by a fresh one, and
its shard runs again (base.py): the shard had no marker, so nothing of it counts until it is
written whole.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
from multiprocessing.connection import wait

from mfhq.config import PipelineConfig, config_from_dict
from mfhq.executors.base import ExecutorError, Lost, ShardScheduler
from mfhq.manifest.io import DiskFull
from mfhq.manifest.lock import NotOwner
from mfhq.worker.log_relay import LOG, Sender, replay, send_logs_to_parent
from mfhq.worker.process import exit_now, quiet_process
from mfhq.worker.shard import close_watchdogs, run_shard
from mfhq.worker.watchdog import WorkerError, WorkerOutOfMemory


def runner_main(conn, cfg_dict: dict, run_dir: str, models_dir: str | None, verbose: bool, owner: str | None) -> None:
    quiet_process()
    send = Sender(conn)
    # This runner's records, and its worker's (replayed by the watchdog), go to the driver, which
    # prints them above its progress bar.
    send_logs_to_parent(send, logging.INFO if verbose else logging.WARNING)
    cfg = config_from_dict(cfg_dict)
    try:
        while True:
            message = conn.recv()
            if message[0] == "stop":  # between shards: each one it ran is written and answered
                close_watchdogs()
                exit_now(conn)
            try:
                send(("stats", run_shard(message[1], run_dir, cfg, models_dir, owner)))
            except DiskFull as exc:
                send(("diskfull", str(exc)))
            except WorkerOutOfMemory as exc:
                send(("oom", str(exc)))
            except (ExecutorError, WorkerError, NotOwner) as exc:
                send(("fatal", str(exc)))
            except Exception as exc:  # a bug: say which shard, stop the run
                logging.getLogger(__name__).exception("shard %s failed", message[1].id)
                send(("fatal", f"shard {message[1].id}: {type(exc).__name__}: {exc}"))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the driver is gone
    finally:
        close_watchdogs()


class _Runner:
    def __init__(self, ctx, cfg: PipelineConfig, run_dir: str, models_dir: str | None, owner: str | None):
        self.conn, child = ctx.Pipe()
        verbose = logging.getLogger("mfhq").getEffectiveLevel() <= logging.DEBUG
        # Not a daemon: a runner has a worker process of its own. It still dies with the driver
        # (PR_SET_PDEATHSIG in quiet_process).
        self.process = ctx.Process(target=runner_main,
                                   args=(child, cfg.to_dict(), run_dir, models_dir, verbose, owner))
        self.process.start()
        child.close()

    def ask_to_stop(self) -> None:
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass

    def stop(self, wait_s: float, asked: bool = False) -> None:
        if not asked:
            self.ask_to_stop()
        self.process.join(timeout=wait_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=10)
        self.conn.close()


class LocalExecutor(ShardScheduler):
    def __init__(self, cfg: PipelineConfig, run_dir: str, models_dir: str | None = None):
        super().__init__(cfg, run_dir, models_dir)
        self.ctx = mp.get_context("spawn")  # fork would copy model state and threads
        self.runners: list[_Runner] = []

    def _spawn(self) -> _Runner:
        return _Runner(self.ctx, self.cfg, self.run_dir, self.models_dir, self.owner)

    def _start_runners(self, n_shards: int) -> int:
        self.runners = [self._spawn() for _ in range(max(1, min(self.cfg.run.workers, n_shards)))]
        return len(self.runners)

    def _submit(self, slot: int, shard) -> None:
        self.runners[slot].conn.send(("shard", shard))

    def _wait(self, timeout: float):
        wait([r.conn for r in self.runners] + [r.process.sentinel for r in self.runners], timeout=timeout)
        for slot, runner in enumerate(self.runners):
            while runner.conn.poll():  # a runner sends one reply per shard, and log records any time
                try:
                    kind, payload = runner.conn.recv()
                except (EOFError, OSError):
                    break
                if kind == LOG:
                    replay(payload)
                    continue
                if kind == "diskfull":
                    raise DiskFull(payload)
                if kind == "oom":
                    raise WorkerOutOfMemory(payload)
                if kind == "fatal":
                    raise ExecutorError(payload)
                yield slot, payload
            if runner.process.is_alive():
                continue
            if slot in self.busy:
                code = runner.process.exitcode
                yield slot, Lost("its runner died", f" (exit code {code})", f"last exit code {code}")
            else:  # died between shards: nothing to run again
                self._restart(slot)

    def _restart(self, slot: int) -> None:
        self.runners[slot].stop(0)
        self.runners[slot] = self._spawn()

    def _stop_runners(self) -> None:
        for runner in self.runners:  # all at once: each stops its worker in parallel with the others
            runner.ask_to_stop()
        for slot, runner in enumerate(self.runners):
            runner.stop(0 if slot in self.busy else 5, asked=True)
        self.runners = []
