"""A loader worker stays quiet when the trainer stops: Ctrl-C on the trainer in the middle of a
batch's hand-over leaves the worker's resource sharer (the thread that passes the file
descriptors of a batch's tensors) with a dropped connection, which it reports through
sys.excepthook; the worker's hook keeps that out of the one stop line the user sees."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A real resource sharer in a fresh interpreter, and a connection to it dropped before the
# handshake, as the trainer's is when it exits mid-batch.
DROPPED = textwrap.dedent("""
    import os, socket, sys, time
    from multiprocessing import resource_sharer
    from omniid.batching import quiet_worker
    if sys.argv[1] == "worker":
        quiet_worker(0)
    resource_sharer.DupFd(os.open(os.devnull, os.O_RDONLY))
    client = socket.socket(socket.AF_UNIX)
    client.connect(resource_sharer._resource_sharer._address)
    client.close()
    time.sleep(1.0)  # the sharer's thread meets the dropped connection
    try:
        raise ValueError("a real error in the worker")
    except ValueError:
        sys.excepthook(*sys.exc_info())
""")


@pytest.mark.skipif(sys.platform == "win32", reason="the resource sharer passes descriptors on POSIX only")
def test_a_worker_is_quiet_about_a_trainer_that_left_and_not_about_its_own_errors():
    plain = subprocess.run([sys.executable, "-c", DROPPED, "plain"], capture_output=True, text=True, timeout=120)
    assert "resource_sharer.py" in plain.stderr  # the traceback a stopped run printed before
    quiet = subprocess.run([sys.executable, "-c", DROPPED, "worker"], capture_output=True, text=True, timeout=120)
    assert "resource_sharer.py" not in quiet.stderr, quiet.stderr
    assert "ValueError: a real error in the worker" in quiet.stderr  # anything else still shows
