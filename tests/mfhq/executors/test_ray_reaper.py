"""The reaper of a local Ray instance, on a process tree shaped like Ray's, without Ray.

The 'driver' starts a 'raylet' that carries the instance's token, which starts an 'agent' whose
environment lost the token (what Ray's setproctitle may do to /proc/PID/environ), and an
unrelated helper of its own. After the driver is killed, everything of the instance stops and
the helper does not.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from mfhq.executors import ray_reaper

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

DRIVER = r"""
import os, subprocess, sys, time
token, reaper_script, pids = sys.argv[1], sys.argv[2], sys.argv[3]
env = {k: v for k, v in os.environ.items() if k != "MFHQ_RAY_INSTANCE"}
reaper = subprocess.Popen([sys.executable, reaper_script, token, str(os.getpid())], stdin=subprocess.PIPE, env=env,
                          start_new_session=True)
agent = "import subprocess, sys, time; subprocess.Popen(sys.argv[1:], env={}); time.sleep(120)"
sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
raylet = subprocess.Popen([sys.executable, "-c", agent, *sleeper], env={**env, "MFHQ_RAY_INSTANCE": token})
helper = subprocess.Popen(sleeper, env=env)
with open(pids, "w") as out:
    out.write(f"{reaper.pid} {raylet.pid} {helper.pid}")
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(predicate, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds  # bounded waits for processes, not a timing claim
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_a_killed_driver_leaves_none_of_its_instance_even_without_the_token_and_spares_the_rest(tmp_path):
    token, pids = uuid.uuid4().hex, tmp_path / "pids"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, token, ray_reaper.__file__, str(pids)])
    try:
        assert _wait(lambda: pids.exists() and pids.read_text().count(" ") == 2)
        reaper, raylet, helper = map(int, pids.read_text().split())
        assert _wait(lambda: ray_reaper.descendants({raylet}, ray_reaper.process_table()))
        agent, = ray_reaper.descendants({raylet}, ray_reaper.process_table())
        assert ray_reaper.carriers(token, [raylet, agent, helper]) == {raylet}  # the agent lost the token
        time.sleep(2 * ray_reaper.POLL_S)  # the reaper has looked at the tree while the driver lived
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        assert _wait(lambda: not _alive(reaper)), "the reaper did not finish"
        assert not _alive(raylet) and not _alive(agent)
        assert _alive(helper), "a process of the driver's that is not Ray's was killed"
    finally:
        for pid in (locals().get("helper"), locals().get("agent"), locals().get("raylet")):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if driver.poll() is None:
            driver.kill()
