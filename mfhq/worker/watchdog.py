"""The watchdog over a runner's worker process (a runner: a local runner process or a Ray actor).

The worker loads the models once and processes the clips it is sent. Its owner watches it: a
decode call that runs past decode.timeout_s, or a clip past run.clip_timeout_s, gets the worker
killed and the clip a `timeout` row. Opening a clip (probing the file; decord hangs there on some
files) is bounded as a decode, on its own clock from the worker's "open" message; the worker's
start on a group, before its first phase message, by run.clip_timeout_s alone. A read on the
worker's decode-ahead thread is bounded as a decode, whatever the main thread does (such a read
may hold the GIL and stop it too). A worker that dies (a native crash in a decoder or a model)
gives its clip a `crashed` row. Either way a fresh worker takes its place. decord can loop forever
in native code holding the GIL, so only a process boundary can bound it: no thread-based timeout
would work. The worker announces each step before it takes it, and the watchdog reads every
message a dead worker sent before it judges the death. Clips sent together (batched, or on CPU
with decode-ahead) that were not at fault are sent again. Where the clip at fault is unclear (a
death while another clip than the main thread's may be running: opened or read ahead, or opened
and not yet taken up; an opening ahead past decode.timeout_s; a death, or a clip past
run.clip_timeout_s, while several clips are in the models together), each clip that may be at
fault is sent again alone and read in line, so the row goes to the clip that fails on its own.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections import deque
from multiprocessing.connection import wait
from typing import Callable

from mfhq.config import PipelineConfig
from mfhq.errors import MfhqError
from mfhq.manifest.io import DiskFull
from mfhq.records import Clip, ClipRow, Status
from mfhq.worker.log_relay import LOG, replay
from mfhq.worker.process import worker_process_main

log = logging.getLogger(__name__)
OnResult = Callable[[Clip, list, dict], None]


class WorkerError(MfhqError, RuntimeError):
    """The worker process cannot run (it cannot load its models): the run cannot go on; the
    message says why."""


class WorkerOutOfMemory(WorkerError):
    """A worker ran out of memory loading its models; the message names the model, the memory
    and what to do (fewer workers)."""


class Watchdog:
    """Starts the worker process, sends it clips, and kills and replaces it when it hangs or dies."""

    def __init__(self, cfg: PipelineConfig, run_dir: str, models_dir: str | None = None, kind: str = "extract"):
        """kind: what the worker does with a clip (mfhq.worker.process.worker_process_main)."""
        self.cfg, self.run_dir, self.models_dir, self.kind = cfg, str(run_dir), models_dir, kind
        self.ctx = mp.get_context("spawn")  # fork would copy model state and threads
        self.process = self.conn = None
        self.provenance = "unknown"
        # Batched (a GPU, or run.batch_on_cpu) the worker takes a shard's clips together and gathers
        # their frames; with decode-ahead it takes them together to read each clip's opening ahead.
        self.group = cfg.run.gathered_frames() > 0
        self.read_across = kind == "extract" and cfg.run.reads_ahead()
        self.suspects: set[str] = set()  # clips in flight when a worker died unclearly: run alone

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        # The worker's records come back as ("log", record) messages, at this process's level
        # (WARNING at least): replayed here, they reach the driver's handlers, never its bar.
        level = min(logging.getLogger().getEffectiveLevel(), logging.WARNING)
        self.process = self.ctx.Process(target=worker_process_main, daemon=True,
                                        args=(child, self.cfg.to_dict(), self.run_dir, self.models_dir, self.kind,
                                              level))
        self.process.start()
        child.close()
        while True:  # model loading: no watchdog (a first load may download or compile)
            if not self.conn.poll(0.5):
                if not self.process.is_alive() and not self.conn.poll():
                    raise self._died_loading()
                continue
            message = self.conn.recv()
            if message[0] == LOG:
                replay(message[1])
            elif message[0] == "oom":
                raise WorkerOutOfMemory(message[1])
            elif message[0] == "fatal":
                raise WorkerError(message[1])
            elif message[0] == "ready":
                self.provenance = message[1]
                return

    def _died_loading(self) -> WorkerError:
        code = self.process.exitcode
        if code != -9:
            return WorkerError(f"a worker died while loading models (exit code {code})")
        from mfhq.worker.memory import memory_state

        return WorkerError(f"a worker died while loading models (killed by signal 9, as the kernel's out-of-memory "
                           f"killer kills; {memory_state(own_peak=False)}); if memory ran out, run fewer workers at once "
                           f"(--workers, now {self.cfg.run.workers})")

    def close(self) -> None:
        if self.process is None:
            return
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=5)
        self._kill()

    def _kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()
        self.process = self.conn = None

    def run(self, clips: list[Clip], on_result: OnResult) -> None:
        """Every clip gets exactly one on_result call: its rows, or a timeout / crashed row."""
        queue = deque(clips)
        self.in_flight: dict[str, Clip] = {}
        while queue or self.in_flight:
            if self.process is not None and not self.in_flight and not self.process.is_alive():
                self._kill()  # died between clips: nobody to blame
            if self.process is None:
                self._start()
            if not self.in_flight:
                self._send(self._next_group(queue))
            wait([self.conn, self.process.sentinel], timeout=0.5)
            # Looked at before the pipe is read: a worker seen dead here has sent all it ever will,
            # so the reads below see every phase it announced before it died. Seen dead after
            # them, it may have announced a read ahead in between and died of it, and the death
            # would be pinned on the clip in the models.
            alive = self.process.is_alive()
            while self.conn.poll():
                try:
                    message = self.conn.recv()
                except (EOFError, OSError):
                    break  # the death is handled below
                self._handle(message, on_result)
            if not self.in_flight:
                continue
            if self.phase_key not in self.in_flight:  # its clip done, the main thread goes on to the next
                self.phase, self.phase_key, self.phase_since = "start", next(iter(self.in_flight)), time.monotonic()
                self.clip_since.setdefault(self.phase_key, self.phase_since)
            blamed = self._overdue()
            if blamed is None:
                unclear = self._unclear(alive)
                if unclear:
                    self._run_alone(*unclear, queue)
                    continue
                if alive:
                    continue
                blamed = self._dead()
            status, reason = blamed
            log.warning(reason)
            self._kill()
            culprit = self.in_flight.pop(self.phase_key)
            self.suspects.discard(culprit.key)
            on_result(culprit, [], ClipRow.failed(culprit, status, reason, self.provenance))
            queue.extendleft(reversed(list(self.in_flight.values())))  # innocent bystanders: again
            self.in_flight = {}

    def _send(self, group: list[Clip]) -> None:
        self.in_flight = {c.key: c for c in group}
        self.conn.send(("clips", group, self.read_across and group[0].key not in self.suspects))
        # "start" (the worker takes the group, before its first phase message) is bounded by
        # run.clip_timeout_s alone; "open" (it probes the file) and decodes by decode.timeout_s.
        self.phase, self.phase_key = "start", group[0].key
        self.phase_since = time.monotonic()
        self.clip_since = {group[0].key: self.phase_since}
        self.reading: dict[str, float] = {}  # clip key -> start of a read on the reader thread
        self.opening: dict[str, float] = {}  # clip key -> start of its opening on the reader thread
        self.ahead: set[str] = set()  # clips the reader thread began on and the main thread has not taken
        self.together: tuple[str, ...] = ()  # the clips in the models together (batched), when several

    def _next_group(self, queue: deque) -> list[Clip]:
        """One clip, or as many as go together up to a suspect; a suspect goes alone."""
        if queue[0].key in self.suspects or not (self.group or self.read_across):
            return [queue.popleft()]
        group = []
        while queue and queue[0].key not in self.suspects:
            group.append(queue.popleft())
        return group

    def _across(self) -> set[str]:
        """The clips other than the main thread's that the worker may have been running: read or
        opened on the reader thread, or opened there and not yet taken by the main thread (the
        decoder's own threads may still work on the packets it was sent)."""
        busy = set(self.reading) | set(self.opening) | self.ahead
        return {key for key in busy if key in self.in_flight and key != self.phase_key}

    def _opening_too_long(self) -> set[str]:
        """Clips the reader thread has been opening ahead for longer than decode.timeout_s. A slow
        disk, or a hang that holds the GIL and stops the main thread too: which, only running
        them alone tells, where an opening in line has its own clock."""
        now = time.monotonic()
        return {key for key, since in self.opening.items()
                if key in self.in_flight and key != self.phase_key and now - since > self.cfg.decode.timeout_s}

    def _unclear(self, alive: bool) -> tuple[set[str], str] | None:
        """The clips that may have killed or stalled the worker beside the main thread's, and the
        warning that says so; None where the main thread's clip alone can be at fault."""
        batch = {key for key in self.together if key in self.in_flight}  # one model call: any one's frames
        now, limit = time.monotonic(), self.cfg.run.clip_timeout_s
        if len(batch) > 1 and (not alive or any(now - self.clip_since.get(key, now) > limit for key in batch)):
            names = ", ".join(str(self.in_flight[key].video_path) for key in sorted(batch))
            what = f"the {limit:g} s clip watchdog ran out" if alive else f"a worker died ({self._exit()})"
            return batch | self._across(), (f"{what} while {names} were in the models together; running each "
                                             f"alone to find which one {'stalls them' if alive else 'killed it'}")
        across = self._opening_too_long() if alive else self._across()
        names = ", ".join(str(self.in_flight[key].video_path) for key in sorted(across))
        if across and alive:
            return across, (f"opening {names} ahead ran past the {self.cfg.decode.timeout_s:g} s watchdog while "
                            f"{self._path()} ran; running each alone, where each opening has its own clock")
        return (across, f"a worker died while it read {names} ahead and ran {self._path()}; running each alone "
                        f"to find which one killed it") if across else None

    def _run_alone(self, across: set[str], warning: str, queue: deque) -> None:
        """Which clip was at fault is unknown: those named and the main thread's become suspects, each
        run alone and read in line (the worker replaced): a row goes only to a clip that fails alone."""
        self.suspects |= across | {self.phase_key}
        log.warning(warning)
        self._kill()
        queue.extendleft(reversed(list(self.in_flight.values())))
        self.in_flight = {}

    def _handle(self, message: tuple, on_result: OnResult) -> None:
        kind = message[0]
        if kind == LOG:
            replay(message[1])
        elif kind == "phase" and message[2] in ("open-ahead", "read", "read-done"):
            key, now = message[1], time.monotonic()
            self.opening.pop(key, None)
            self.reading.pop(key, None)
            if message[2] == "open-ahead":
                self.opening[key] = now
                self.ahead.add(key)
            elif message[2] == "read":
                self.reading[key] = now
        elif kind == "phase":
            self.phase_key, self.phase, self.phase_since = message[1], message[2], time.monotonic()
            self.together = (message[1], *message[3:]) if len(message) > 3 else ()  # "process" of a batch
            for key in (message[1], *message[3:]):
                self.clip_since.setdefault(key, self.phase_since)
                self.ahead.discard(key)  # the main thread has it: a clip it runs
        elif kind == "result":
            clip = self.in_flight.pop(message[1])
            self.clip_since.pop(message[1], None)
            self.suspects.discard(message[1])
            for held in (self.reading, self.opening):
                held.pop(message[1], None)
            self.ahead.discard(message[1])
            self.together = () if message[1] in self.together else self.together  # the batch is out of the models
            on_result(clip, message[2], message[3])
        elif kind == "diskfull":
            self._kill()
            raise DiskFull(message[1])
        elif kind == "fatal":
            raise WorkerError(message[1])

    def _overdue(self) -> tuple[str, str] | None:
        now = time.monotonic()
        limits = self.cfg.decode.timeout_s, self.cfg.run.clip_timeout_s
        if self.phase in ("decode", "open") and now - self.phase_since > limits[0] and not self._reading_across():
            doing = "opening the video" if self.phase == "open" else "decoding"
            return Status.TIMEOUT, f"{self._path()}: {doing} ran past the {limits[0]:g} s watchdog"
        reads = [key for key, since in self.reading.items() if key in self.in_flight and now - since > limits[0]]
        if reads:
            self.phase_key = reads[0]
            return Status.TIMEOUT, f"{self._path()}: decoding ran past the {limits[0]:g} s watchdog"
        late = [key for key, since in self.clip_since.items()  # a batch in the models: _unclear's
                if key in self.in_flight and key not in self.together and now - since > limits[1]]
        if late:
            self.phase_key = late[0]
            return Status.TIMEOUT, f"{self._path()}: the clip ran past the {limits[1]:g} s watchdog"
        return None

    def _reading_across(self) -> bool:
        """The one reader thread of a CPU worker is opening or reading the next clip: this clip's
        reads are done, so its main thread is not decoding; if it stalls, a read that holds the
        GIL stalls it, and that read's own timer names its clip (an opening's: _opening_too_long)."""
        busy = [*self.reading, *self.opening]
        return self.read_across and not self.group and any(key != self.phase_key for key in busy)

    def _dead(self) -> tuple[str, str] | None:
        if self.process.is_alive():
            return None
        ahead = self.phase_key in self.opening or self.phase_key in self.reading
        during = self.phase + (" (its opening or read ahead in flight)" if ahead else
                               " (a decode-ahead read in flight)" if self.reading else "")
        return Status.CRASHED, f"{self._path()}: the worker died ({self._exit()}) during {during}"

    def _exit(self) -> str:  # how the dead worker ended: "signal 11", "exit code 1"
        self.process.join(timeout=5)
        code = self.process.exitcode
        return f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"

    def _path(self) -> str:
        return str(self.in_flight[self.phase_key].video_path)
