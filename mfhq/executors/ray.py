"""The Ray executor: `--executor ray [--address ADDR]`.

Shards run on actors (`run.num_cpus` / `run.num_gpus` each), Ray's runners. An actor is a
long-lived process that calls run_shard, so its watched worker process loads the models once and
keeps the local executor's watchdog (a hang -> `timeout`, a native crash -> `crashed`). A lost
actor or node means its shard runs again on a fresh actor (base.py): the shard had no marker, so
nothing half-written counts. Ray is an optional extra; without an address a local Ray instance
is started. On a cluster, every node needs mfhq installed and the run folder on a shared file
system.

Nothing outlives the driver: on a cluster its actors are owned by the driver, so Ray stops them
when it dies; a local instance of its own is stopped by ray_reaper.py, however the driver ends.
Each shard checks the run lock's token before it writes (mfhq.worker.shard), so an actor that
is still finishing a shard after its driver died never writes beside a resumed run.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

from mfhq.config import PipelineConfig, config_from_dict
from mfhq.executors.base import ExecutorError, Lost, ShardScheduler
from mfhq.executors.ray_reaper import ENV as INSTANCE_ENV
from mfhq.manifest.io import DiskFull
from mfhq.worker.shard import close_watchdogs, run_shard
from mfhq.worker.watchdog import WorkerOutOfMemory


class ShardActor:
    """Runs shards in one Ray worker process (wrapped with ray.remote by the executor)."""

    def __init__(self, cfg_dict: dict, run_dir: str, models_dir: str | None, owner: str | None):
        logging.basicConfig(level=logging.WARNING)
        self.cfg, self.run_dir, self.models_dir = config_from_dict(cfg_dict), run_dir, models_dir
        self.owner = owner

    def run(self, shard):
        return run_shard(shard, self.run_dir, self.cfg, self.models_dir, self.owner)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        close_watchdogs()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError("--executor ray needs Ray, an optional extra: pip install 'mfhq[ray]'") from None
    return ray


class RayExecutor(ShardScheduler):
    def __init__(self, cfg: PipelineConfig, run_dir: str, models_dir: str | None = None):
        self.ray = _import_ray()
        super().__init__(cfg, run_dir, models_dir)
        self.started = False
        self.reaper: subprocess.Popen | None = None
        self.actors: list = []
        self.refs: dict = {}  # object ref of a shard in flight -> its actor's slot

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        if not self.cfg.run.address:  # a private local instance for one run: no token to set up
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            self._start_reaper()
        try:
            ray.init(address=self.cfg.run.address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING,
                     num_cpus=None if self.cfg.run.address else max(self.cfg.run.workers, 1))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            self._stop_reaper()
            raise ExecutorError(f"could not connect to Ray at {self.cfg.run.address or 'a new local instance'}: {exc}") from None
        finally:  # Ray's processes have it now; nothing else this driver starts may
            os.environ.pop(INSTANCE_ENV, None)
        self.started = True

    def _start_reaper(self) -> None:
        """ray_reaper.py, then the token in the environment Ray's processes will inherit."""
        token = uuid.uuid4().hex
        env = {k: v for k, v in os.environ.items() if k != INSTANCE_ENV}
        self.reaper = subprocess.Popen([sys.executable, str(Path(__file__).with_name("ray_reaper.py")), token,
                                        str(os.getpid())], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        os.environ[INSTANCE_ENV] = token

    def _stop_reaper(self) -> None:
        """Close its pipe: it stops what is left of the instance (Ray's agents do not always exit)."""
        if self.reaper is not None:
            self.reaper.stdin.close()
            try:
                self.reaper.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.log.warning("the Ray instance's reaper (pid %d) is still at work", self.reaper.pid)
            self.reaper = None

    def _actor(self):
        remote = self.ray.remote(num_cpus=self.cfg.run.num_cpus, num_gpus=self.cfg.run.num_gpus, max_restarts=0)(ShardActor)
        return remote.remote(self.cfg.to_dict(), self.run_dir, self.models_dir, self.owner)

    def _capacity(self) -> int:
        if not self.cfg.run.address:
            return max(1, self.cfg.run.workers)
        resources = self.ray.cluster_resources()
        slots = resources.get("CPU", 1) // max(self.cfg.run.num_cpus, 1e-3)
        if self.cfg.run.num_gpus:
            slots = min(slots, resources.get("GPU", 0) // self.cfg.run.num_gpus)
        return max(1, int(slots))

    def _start_runners(self, n_shards: int) -> int:
        self._connect()
        self.actors = [self._actor() for _ in range(min(self._capacity(), n_shards))]
        return len(self.actors)

    def _submit(self, slot: int, shard) -> None:
        self.refs[self.actors[slot].run.remote(shard)] = slot

    def _wait(self, timeout: float):
        ray = self.ray
        ready, _ = ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        for ref in ready:
            slot = self.refs.pop(ref)
            try:
                outcome = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.NodeDiedError) as exc:
                outcome = Lost("its Ray worker was lost", "", str(exc))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if hasattr(exc, "cause") else None
                if isinstance(cause, (DiskFull, WorkerOutOfMemory)):
                    raise type(cause)(str(cause)) from None
                raise ExecutorError(f"shard {self.busy[slot].id}: {cause or exc}") from None
            yield slot, outcome

    def _restart(self, slot: int) -> None:
        self.actors[slot] = self._actor()

    def _stop_runners(self) -> None:
        ray = self.ray
        if self.actors and ray.is_initialized():
            try:  # let each actor stop its worker process; then the actor itself
                ray.wait([a.close.remote() for a in self.actors], num_returns=len(self.actors), timeout=10)
            except Exception:  # an actor already lost
                pass
            for actor in self.actors:
                ray.kill(actor)
        self.actors, self.refs = [], {}
        if self.started:
            ray.shutdown()
            self.started = False
        self._stop_reaper()
