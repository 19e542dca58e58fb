"""The failpoints (output/failpoints.py) that the fault tests inject with: a no-op when unset,
acting at the Nth arrival, once with a marker, handed to Ray workers, and killing this process
or the driver. The faults they inject are in tests/pipeline/test_faults.py and test_resume.py."""
import errno
import os
import signal
import subprocess
import sys

import pytest

from pixcap.output import failpoints


def test_failpoints_are_a_no_op_when_unset(monkeypatch):
    monkeypatch.delenv(failpoints.ENV, raising=False)
    failpoints.reached("fragment")
    assert failpoints.worker_env() == {}


def test_a_failpoint_acts_at_the_nth_arrival_and_once_with_a_marker(failpoint_env, tmp_path):
    failpoint_env(failpoints.ENV, "shard_tar:2:enospc")
    failpoints.reached("fragment")
    failpoints.reached("shard_tar")
    with pytest.raises(OSError) as raised:
        failpoints.reached("shard_tar")
    assert raised.value.errno == errno.ENOSPC
    failpoints.reached("shard_tar")  # the third arrival passes
    marker = tmp_path / "fired"
    failpoint_env(failpoints.ONCE_ENV, str(marker))
    failpoints._counts.clear()  # as in a restarted worker
    failpoints.reached("shard_tar")
    with pytest.raises(OSError):
        failpoints.reached("shard_tar")
    assert marker.exists()
    failpoints._counts.clear()
    failpoints.reached("shard_tar")
    failpoints.reached("shard_tar")  # the marker is there: fired once already


def test_several_failpoints_in_one_run_each_act_once_with_a_marker_of_their_own(failpoint_env, tmp_path):
    failpoint_env(failpoints.ENV, "shard_tar:2:enospc,write:1:enospc")
    marker = tmp_path / "fired"
    failpoint_env(failpoints.ONCE_ENV, str(marker))
    failpoints.reached("shard_tar")
    failpoints.reached("fragment")  # not named: passes
    with pytest.raises(OSError, match="injected at write"):
        failpoints.reached("write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fired.write"]
    with pytest.raises(OSError, match="injected at shard_tar"):
        failpoints.reached("shard_tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fired.shard_tar", "fired.write"]
    failpoints._counts.clear()  # as in a restarted worker: both markers are there, neither acts again
    for point in ("shard_tar", "shard_tar", "write"):
        failpoints.reached(point)


def test_a_point_named_twice_is_refused(failpoint_env):
    failpoint_env(failpoints.ENV, "read:1,read:2")
    with pytest.raises(ValueError, match="point 'read' named twice"):
        failpoints.reached("read")


def test_workers_get_the_spec_and_the_driver_pid(failpoint_env, tmp_path):
    failpoint_env(failpoints.ENV, "caption:1:driver")
    failpoint_env(failpoints.ONCE_ENV, str(tmp_path / "fired"))
    assert failpoints.worker_env() == {"runtime_env": {"env_vars": {
        failpoints.ENV: "caption:1:driver", failpoints.ONCE_ENV: str(tmp_path / "fired"),
        failpoints.DRIVER_ENV: str(os.getpid())}}}


REACH_TWICE = """
from pixcap.output import failpoints
failpoints.reached("read")
print("first", flush=True)
failpoints.reached("read")
print("second", flush=True)
"""


def test_kill_actions_sigkill_this_process_or_the_driver():
    env = {**os.environ, failpoints.ENV: "read:2"}
    worker = subprocess.run([sys.executable, "-c", REACH_TWICE], env=env, capture_output=True, text=True, timeout=60)
    assert worker.returncode == -signal.SIGKILL and worker.stdout == "first\n"
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    env = {**os.environ, failpoints.ENV: "read:1:driver", failpoints.DRIVER_ENV: str(driver.pid)}
    worker = subprocess.run([sys.executable, "-c", REACH_TWICE], env=env, capture_output=True, text=True, timeout=60)
    assert worker.returncode == 0 and worker.stdout == "first\nsecond\n"
    assert driver.wait(timeout=10) == -signal.SIGKILL
