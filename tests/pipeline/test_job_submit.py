"""`ray job submit -- pixcap run JOB` against a head that `ray start --head` started, as the
README prints it: the job succeeds, its output accounts for every input, and every server of the
head, the dashboard and GCS included, listens on 127.0.0.1 only.

The head is a cluster of its own (its own ports and temp dir, token authentication on), never the
test session's Ray, and it is stopped by killing the processes it started: `ray stop` would stop
every Ray on the machine.
"""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from bench.loopback import LOOPBACK, free_ports
from pixcap.schemas.manifest import MANIFEST_NAME

from .collection import write_collection
from .test_end_to_end import job_for

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent  # the venv's ray and pixcap, as an activated venv puts them on PATH
JOB_TIMEOUT = 600


def started_by(head: psutil.Process, temp_dir: str) -> list:
    """`ray start` and every process below it, and anything else that names its temp dir."""
    found = {}
    try:
        found.update({p.pid: p for p in [head, *head.children(recursive=True)]})
    except psutil.NoSuchProcess:
        pass
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.pid != os.getpid() and any(temp_dir in a for a in p.info["cmdline"] or ()):
                found.update({q.pid: q for q in [p, *p.children(recursive=True)]})
        except psutil.Error:
            pass
    return list(found.values())


def stop(head: psutil.Process, temp_dir: str) -> list:
    """SIGTERM every process of the head, then SIGKILL what is left after a few seconds (a
    graceful stop takes over ten on two cores); returns what still runs (nothing, or the test fails)."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10), (signal.SIGKILL, 10)):
        procs = started_by(head, temp_dir)  # again each round: a dying raylet may have started a worker
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=wait)
    return [p for p in started_by(head, temp_dir) if running(p)]


def running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_head(env: dict) -> dict:
    """`ray start --head --block` on loopback, with its own ports and temp dir; returns once the
    runtime started, or stops what it began and raises with its output."""
    temp_dir = tempfile.mkdtemp(prefix="pxj", dir="/tmp")  # short: Ray's socket paths live under it
    gcs, dashboard, agent_http, agent_grpc, runtime_env, metrics, client, node_manager, object_manager = free_ports(9)
    command = [
        str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address", LOOPBACK, "--port", str(gcs), "--num-cpus", "2", "--temp-dir", temp_dir,
        "--include-dashboard", "true", "--dashboard-host", LOOPBACK, "--dashboard-port", str(dashboard),
        # Ports that default to fixed numbers (52365, 10001, ...) would meet another Ray on this machine.
        "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
        "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics),
        "--ray-client-server-port", str(client), "--node-manager-port", str(node_manager),
        "--object-manager-port", str(object_manager),
    ]
    log = Path(temp_dir) / "ray-start.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=temp_dir,
                                   start_new_session=True)
    head = {"env": env, "gcs": gcs, "dashboard": dashboard, "url": f"http://{LOOPBACK}:{dashboard}",
            "popen": process, "process": psutil.Process(process.pid), "temp_dir": temp_dir}
    deadline = time.monotonic() + 180
    while "Ray runtime started." not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            output = log.read_text()[-4000:]
            close(head)
            raise RuntimeError(f"ray start failed:\n{output}")
        time.sleep(0.5)
    return head


def close(head: dict) -> None:
    left = stop(head["process"], head["temp_dir"])
    head["popen"].wait(timeout=10)
    shutil.rmtree(head["temp_dir"], ignore_errors=True)
    assert not left, f"left running: {[p.pid for p in left]}"


@pytest.fixture(scope="module")
def head(ray_subprocess):
    """A Ray head on loopback with its dashboard, as `ray start --head` makes one."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        # Ray takes 127.0.0.1 for the machine's outward address unless told this is no cluster;
        # with it every process of the node binds to loopback.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        # A token of the test's own: the head and the client agree without ~/.ray/auth_token.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    })
    failures = []
    for _ in range(3):
        # `ray start` gives the raylet a fixed 30 s to register with GCS, which a loaded two-core
        # machine can miss; a second head, on fresh ports, usually makes it.
        try:
            started = start_head(env)
            break
        except RuntimeError as e:
            failures.append(str(e))
    else:
        pytest.fail("\n\n".join(failures))
    try:
        yield started
    finally:
        close(started)


def ray_job(head, *args, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    command = [str(BIN / "ray"), "job", args[0], "--address", head["url"], "--log-style", "record", *args[1:]]
    return subprocess.run(command,
                          env=head["env"], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_ray_job_submit_runs_pixcap_on_a_loopback_head(head, tmp_path, models_cache):
    root = tmp_path / "collection"
    expected = write_collection(root)
    out = tmp_path / "out"
    # The README's command, run in a folder that holds jobs/: the working dir is uploaded and the
    # job file named relative to it; inputs and output are absolute.
    workdir = tmp_path / "submit"
    (workdir / "jobs").mkdir(parents=True)
    (workdir / "jobs" / "tiny.yaml").write_text(yaml.safe_dump(job_for(root, out, models_cache).to_dict()))
    submission = f"pixcap-test-{secrets.token_hex(4)}"
    try:
        submitted = ray_job(head, "submit", "--submission-id", submission, "--working-dir", ".",
                            "--", "pixcap", "run", "jobs/tiny.yaml", cwd=workdir, timeout=JOB_TIMEOUT)
        returncode, stderr = submitted.returncode, submitted.stderr
    except subprocess.TimeoutExpired as e:
        returncode, stderr = f"timed out after {JOB_TIMEOUT} s", str(e.stderr or "")
    status = ray_job(head, "status", submission)
    logs = ray_job(head, "logs", submission)
    told = (f"submit: {returncode}\n{stderr[-3000:]}\n"
            f"status:\n{status.stdout}{status.stderr[-2000:]}\nlogs:\n{logs.stdout[-5000:]}")
    assert returncode == 0 and f"Job '{submission}' succeeded" in status.stdout, told

    totals = json.loads((out / MANIFEST_NAME).read_text())["totals"]
    assert totals["inputs"] == expected["inputs"], (totals, told)
    assert totals["rejected"] == expected["broken"], (totals, told)
    assert totals["written"] + totals["rejected"] == totals["inputs"], (totals, told)

    listening = {}
    for p in started_by(head["process"], head["temp_dir"]):
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    listening[(c.laddr.ip, c.laddr.port)] = p.name()
        except psutil.Error:
            pass
    ports = {port for _, port in listening}
    assert {head["gcs"], head["dashboard"]} <= ports, listening
    outward = {k: v for k, v in listening.items() if k[0] not in (LOOPBACK, f"::ffff:{LOOPBACK}")}
    assert not outward, f"listening beyond loopback: {outward}"
