"""The Ray executor: `--executor ray [--address ADDR]`.

Shards run on actors (`run.num_cpus` / `run.num_gpus` each). An actor is a long-lived process
that calls run_shard, so its watched worker loads the models once and keeps the local
executor's watchdog (a hang -> `timeout`, a native crash -> `crashed`). A lost actor or node
means its shard runs again on a fresh actor: the shard had no marker, so nothing half-written
counts. Ray is an optional extra; without an address a local Ray instance is started. On a
cluster, every node needs mfhq installed and the run folder on a shared file system.
"""
from __future__ import annotations

import logging
import os
from collections import deque

from mfhq.config import PipelineConfig
from mfhq.executors.base import DiskFull, ExecutorError

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3


class ShardActor:
    """Runs shards in one Ray worker process (wrapped with ray.remote by the executor)."""

    def __init__(self, cfg_dict: dict, run_dir: str, models_dir: str | None):
        from mfhq.config import config_from_dict

        logging.basicConfig(level=logging.WARNING)
        self.cfg, self.run_dir, self.models_dir = config_from_dict(cfg_dict), run_dir, models_dir

    def run(self, shard):
        from mfhq.shard import run_shard

        return run_shard(shard, self.run_dir, self.cfg, self.models_dir)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        from mfhq.shard import close_workers

        close_workers()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError("--executor ray needs Ray, an optional extra: pip install 'mfhq[ray]'") from None
    return ray


class RayExecutor:
    def __init__(self, cfg: PipelineConfig, run_dir: str, models_dir: str | None = None):
        self.ray = _import_ray()
        self.cfg, self.run_dir = cfg, str(run_dir)
        self.models_dir = str(models_dir) if models_dir else None
        self.started = False
        self.actors: list = []
        self.running: dict = {}  # object ref -> (actor index, shard)

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        if not self.cfg.run.address:  # a private local instance for one run: no token to set up
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        try:
            ray.init(address=self.cfg.run.address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING,
                     num_cpus=None if self.cfg.run.address else max(self.cfg.run.workers, 1))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ExecutorError(f"could not connect to Ray at {self.cfg.run.address or 'a new local instance'}: {exc}") from None
        self.started = True

    def _actor(self):
        remote = self.ray.remote(num_cpus=self.cfg.run.num_cpus, num_gpus=self.cfg.run.num_gpus, max_restarts=0)(ShardActor)
        return remote.remote(self.cfg.to_dict(), self.run_dir, self.models_dir)

    def _capacity(self) -> int:
        if not self.cfg.run.address:
            return max(1, self.cfg.run.workers)
        resources = self.ray.cluster_resources()
        slots = resources.get("CPU", 1) // max(self.cfg.run.num_cpus, 1e-3)
        if self.cfg.run.num_gpus:
            slots = min(slots, resources.get("GPU", 0) // self.cfg.run.num_gpus)
        return max(1, int(slots))

    def run(self, shards, on_stats) -> None:
        queue = deque(shards)
        if not queue:
            return
        self._connect()
        ray = self.ray
        self.actors = [self._actor() for _ in range(min(self._capacity(), len(queue)))]
        idle = list(range(len(self.actors)))
        running = self.running
        attempts: dict[str, int] = {}
        while queue or running:
            while idle and queue:
                index, shard = idle.pop(), queue.popleft()
                running[self.actors[index].run.remote(shard)] = (index, shard)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in ready:
                index, shard = running.pop(ref)
                try:
                    stats = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                        ray.exceptions.NodeDiedError) as exc:
                    attempts[shard.id] = attempts.get(shard.id, 0) + 1
                    if attempts[shard.id] >= MAX_ATTEMPTS:
                        raise ExecutorError(f"shard {shard.id}: its Ray worker was lost {MAX_ATTEMPTS} times ({exc})") from None
                    log.warning("shard %s: its Ray worker was lost; running the shard again", shard.id)
                    self.actors[index] = self._actor()
                    queue.appendleft(shard)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if hasattr(exc, "cause") else None
                    if isinstance(cause, DiskFull):
                        raise DiskFull(str(cause)) from None
                    raise ExecutorError(f"shard {shard.id}: {cause or exc}") from None
                else:
                    on_stats(stats)
                idle.append(index)

    def close(self) -> None:
        """Stop the actors; shards in flight stay pending (no marker) and lose their temp files."""
        from pathlib import Path

        from mfhq.shard import remove_temp_files

        ray = self.ray
        if self.actors and ray.is_initialized():
            try:  # let each actor stop its worker; then the actor itself
                ray.wait([a.close.remote() for a in self.actors], num_returns=len(self.actors), timeout=10)
            except Exception:  # an actor already lost
                pass
            for actor in self.actors:
                ray.kill(actor)
        for _, shard in self.running.values():
            remove_temp_files(Path(self.run_dir), shard)
        self.actors, self.running = [], {}
        if self.started:
            ray.shutdown()
            self.started = False
