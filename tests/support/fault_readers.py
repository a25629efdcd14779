"""Decoders that misbehave the way native decoders do, for the watchdog tests.

Selected by file name, so one run can hold good and bad clips. Loaded by the worker through
the `decode.backend: "fault_readers:FaultyReader"` hook (this folder must be on PYTHONPATH).
"""
from __future__ import annotations

import ctypes
import os
import signal
import time

from fault_backends import MODEL_FAULTS
from mfhq.decode import DecordReader

CRASH_OPENS = 5  # a `crash` clip's opens that crash: more than any retry the watchdog contract allows
SLOW_OPEN_S = 6.0  # a `slowopen` clip's probe: past the tests' 3 s decode bound, far within a clip's
# (a `slowread` clip's first read blocks as long: a decode within its bound, once its clock is its own)


class FaultyReader(DecordReader):
    name = "faulty"

    def open(self, path):
        self.path_name = path.name
        self.model_fault = None  # which fault_backends.MODEL_FAULTS marks this clip's frames
        for fault in MODEL_FAULTS:
            if fault in path.name:
                # A clip whose frames kill or stall the model that sees them (fault_backends.FaultyDetector):
                # each open counted, as a `crash` clip's; past CRASH_OPENS its frames are left as read.
                tries = path.with_name(f".{path.name}.tries")
                with open(tries, "a") as handle:
                    handle.write("try\n")
                if len(tries.read_text().splitlines()) <= CRASH_OPENS:
                    self.model_fault = fault
        if "hang" in path.name:  # each open counted, a line a try beside the video: how often the clip ran
            with open(path.with_name(f".{path.name}.tries"), "a") as handle:
                handle.write("try\n")
        if "hang" in path.name and "hangread" not in path.name:
            # A native call that never returns and keeps the GIL, like decord's hang reported as #373:
            # no Python-level timeout can interrupt this, only killing the process can.
            ctypes.PyDLL(None).sleep(3600)
        if "slowopen" in path.name:
            # A file on a slow network disk: its probe blocks (the GIL free, as in a read), then
            # it decodes as any file. Each open counted, a line a try beside the video.
            with open(path.with_name(f".{path.name}.tries"), "a") as handle:
                handle.write("try\n")
            time.sleep(SLOW_OPEN_S)
        if "crash" in path.name:
            # Each open is counted, a line a try beside the video, so a test sees how often the clip
            # ran. Past CRASH_OPENS it decodes: a watchdog that retried without end shows as a clip
            # that ends ok, not as a run that never ends.
            tries = path.with_name(f".{path.name}.tries")
            with open(tries, "a") as handle:
                handle.write("try\n")
            if len(tries.read_text().splitlines()) <= CRASH_OPENS:
                os.kill(os.getpid(), signal.SIGSEGV)
        if "killparent" in path.name:
            # Lose whatever runs the shard (a local runner, a Ray actor) mid-shard, once: the
            # worker's parent is it. A flag beside the video makes the second attempt decode.
            flag = path.with_name(f".{path.name}.killed")
            if not flag.exists():
                flag.touch()
                os.kill(os.getppid(), signal.SIGKILL)
                ctypes.PyDLL(None).sleep(60)  # the worker follows its parent (PDEATHSIG)
        if "killalways" in path.name:
            # Lose whatever runs the shard on every attempt: the driver must give the shard up after
            # MAX_ATTEMPTS, not run it forever. A line a try, beside the video, counts them.
            with open(path.with_name(f".{path.name}.tries"), "a") as tries:
                tries.write("try\n")
            os.kill(os.getppid(), signal.SIGKILL)
            ctypes.PyDLL(None).sleep(60)
        return super().open(path)

    def read(self, indices):
        if "slowread" in self.path_name and not getattr(self, "read_slowly", False):
            # Its first read blocks as its probe does (a slow disk, the GIL free), then it decodes.
            self.read_slowly = True
            time.sleep(SLOW_OPEN_S)
        if "hangread" in self.path_name and indices[0] > 0:
            # The same, in a later chunk: with decode-ahead, read on a thread while the main
            # thread runs the models on the chunk before; the GIL held stops that thread too.
            ctypes.PyDLL(None).sleep(3600)
        frames = super().read(indices)
        if self.model_fault is not None:
            frames[:, 0] = MODEL_FAULTS[self.model_fault]  # each frame's top row, the detector's cue
        return frames


class DiskFillingReader(DecordReader):
    """A disk that is full while `<videos>/.disk-full` exists, for machines where a test cannot
    mount a small file system (no root): every crop written for a clip named `*fill*` fails
    with ENOSPC in the worker's real write path, as a full disk makes it fail."""

    name = "decord"  # rows must equal those of a run with the real reader

    def open(self, path):
        if "fill" in path.name and (path.parent / ".disk-full").exists():
            import errno

            import mfhq.worker.clip

            real = mfhq.worker.clip.atomic_write_bytes

            def full(dest, data, durable=True):
                mfhq.worker.clip.atomic_write_bytes = real  # one failure per opened clip
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dest))

            mfhq.worker.clip.atomic_write_bytes = full
        return super().open(path)
