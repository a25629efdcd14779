"""Decoders that misbehave the way native decoders do, for the watchdog tests.

Selected by file name, so one run can hold good and bad clips. Loaded by the worker through
the `decode.backend: "fault_readers:FaultyReader"` hook (this folder must be on PYTHONPATH).
"""
from __future__ import annotations

import ctypes
import os
import signal

from mfhq.decode import DecordReader


class FaultyReader(DecordReader):
    name = "faulty"

    def open(self, path):
        if "hang" in path.name:
            # A native call that never returns and keeps the GIL, like decord's issue #373:
            # no Python-level timeout can interrupt this, only killing the process can.
            ctypes.PyDLL(None).sleep(3600)
        if "crash" in path.name:
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().open(path)
