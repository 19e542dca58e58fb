"""Starting Ray: addresses that accept and never answer, CPU requests the cluster can never
satisfy, what the cluster waits on, loopback-only listeners, and Ray's output in a log file.

Real parts: socket servers on 127.0.0.1, the session's Ray (2 CPUs), and `pixcap run` in a
subprocess with a Ray of its own.
"""
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from ipaddress import ip_address
from typing import NamedTuple

import psutil
import pytest
import yaml

from pixcap.cli.main import main
from pixcap.pipeline.handshake import NoCluster, probe
from pixcap.pipeline.resources import describe_waiting, fit_to_cluster
from pixcap.schemas import JobError, load_job

from tests.tiny_jobs import with_tiny_models

from .tarfiles import sa1b_members, write_tar


@contextmanager
def tcp_server(answer: bytes = None):
    """A server on 127.0.0.1 that accepts every connection and then says nothing (or `answer`)."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            held.append(connection)
            if answer is not None:
                connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        for connection in held:
            connection.close()


# -- addresses ---------------------------------------------------------------------------------
def test_a_server_that_accepts_and_stays_silent_is_no_cluster():
    with tcp_server() as port:
        start = time.monotonic()
        with pytest.raises(NoCluster, match="accepted the connection but did not answer a gRPC handshake"):
            probe("127.0.0.1", port, timeout=2)
        assert time.monotonic() - start < 4


def test_a_server_that_answers_something_else_is_no_cluster():
    with tcp_server(answer=b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:
        with pytest.raises(NoCluster, match="not as a gRPC server"):
            probe("127.0.0.1", port, timeout=2)


def test_a_real_gcs_answers_the_handshake(ray_session):
    host, port = ray_session.get_runtime_context().gcs_address.rsplit(":", 1)
    start = time.monotonic()
    probe(host, int(port))
    assert time.monotonic() - start < 1


def collection_job(tmp_path, models_cache, **keys) -> dict:
    (tmp_path / "in").mkdir(exist_ok=True)
    write_tar(tmp_path / "in" / "sa_000000.tar", sa1b_members(1, 4))
    return with_tiny_models({"inputs": [str(tmp_path / "in")], "output": str(tmp_path / "out"), "shard_size": 2,
                             "models_cache": models_cache, "progress_seconds": 1.0,
                             "caption": {"max_new_tokens": 4, "batch_size": 2}, "clip": {"grounding_threshold": 0.0},
                             **keys})


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_run_refuses_a_silent_address_in_seconds_before_touching_the_output(tmp_path, capsys, models_cache, scheme):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(collection_job(tmp_path, models_cache)))
    with tcp_server() as port:
        start = time.monotonic()
        code = main(["run", str(job), "--address", f"{scheme}127.0.0.1:{port}"])
        seconds = time.monotonic() - start
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.strip().splitlines()[-1] == (
        f"pixcap: error: cannot reach the Ray cluster at {scheme}127.0.0.1:{port}: it accepted the connection but did "
        "not answer a gRPC handshake in 5 s (is this a Ray GCS or ray:// port?)")
    assert seconds < 15, f"{seconds:.1f} s"  # the handshake waits 5 s; was 280 s and more
    assert not (tmp_path / "out").exists()


def test_a_closed_port_is_refused_at_once(tmp_path, capsys, models_cache):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(collection_job(tmp_path, models_cache)))
    assert main(["run", str(job), "--address", f"127.0.0.1:{port}"]) == 2
    assert "Connection refused" in capsys.readouterr().err


# -- CPU requests ------------------------------------------------------------------------------
def test_cpu_requests_that_cannot_fit_are_scaled_to_the_cluster_with_one_line(ray_session, tmp_path, models_cache):
    """Three actor pools at 1 CPU and tasks at 1 CPU, on the session's 2 CPUs: Ray would wait forever."""
    assert ray_session.cluster_resources()["CPU"] == 2
    job = load_job(collection_job(tmp_path, models_cache, ray={"cpus_per_actor": 1, "cpus_per_task": 1}))
    lines = []
    fitted = fit_to_cluster(job, lines.append)
    assert (fitted.ray.cpus_per_actor, fitted.ray.cpus_per_task) == (0.5, 0.5)
    assert lines == ["pixcap: warning: 3 actors x ray.cpus_per_actor=1 + ray.cpus_per_task=1 need 4 CPUs and the Ray "
                     "cluster has 2; running with ray.cpus_per_actor=0.5 and ray.cpus_per_task=0.5 (the cores are shared)"]
    assert job.ray.cpus_per_actor == 1  # the job as written is not changed (the manifest records it)


def test_cpu_requests_that_fit_are_left_alone(ray_session, tmp_path, models_cache):
    job = load_job(collection_job(tmp_path, models_cache, ray={"cpus_per_actor": 0.25, "cpus_per_task": 0.5}))
    lines = []
    assert fit_to_cluster(job, lines.append) is job and lines == []


def test_more_actors_than_cpus_are_fitted_too(ray_session, tmp_path, models_cache):
    job = load_job(collection_job(tmp_path, models_cache, caption={"actors": 6}, clip={"actors": 3},
                                  ray={"cpus_per_actor": 1, "cpus_per_task": 1}))
    fitted = fit_to_cluster(job, lambda line: None)
    assert 10 * fitted.ray.cpus_per_actor + fitted.ray.cpus_per_task <= 2


def test_gpus_the_cluster_cannot_place_are_refused_naming_the_keys(ray_session, tmp_path, models_cache):
    from pixcap.pipeline.resources import check_gpus

    job = load_job(collection_job(tmp_path, models_cache, caption={"gpus_per_actor": 1}))
    with pytest.raises(JobError, match=r"^caption.gpus_per_actor=1.0 but the Ray cluster has no GPU$"):
        check_gpus(job)


# -- what the cluster waits on -----------------------------------------------------------------
def test_describe_waiting_names_pending_actors_and_their_demands(ray_session):
    @ray_session.remote(num_cpus=0, resources={"pixcap_test_never": 1})
    class NeverPlaced:
        pass

    actor = NeverPlaced.remote()
    try:
        deadline, said = time.monotonic() + 30, ""
        while "pixcap_test_never" not in said and time.monotonic() < deadline:
            time.sleep(0.5)
            said = describe_waiting()
        assert "actors not started: 1 x NeverPlaced" in said, said
        assert "requests waiting for resources: 1 x {pixcap_test_never: 1}" in said, said
        assert "free now: " in said and " of 2 CPU" in said, said
    finally:
        ray_session.kill(actor)


# -- loopback listeners ------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    address = ip_address(host.split("%")[0])
    return address.is_loopback or (address.version == 6 and address.ipv4_mapped is not None
                                   and address.ipv4_mapped.is_loopback)


def listeners(root: psutil.Process) -> dict:
    """{(pid, name): [address, ...]} of every listening TCP socket and bound UDP socket of root
    and its descendants."""
    found = {}
    for process in [root] + root.children(recursive=True):
        try:
            sockets = process.net_connections(kind="inet")
            name = process.name()
        except psutil.Error:
            continue
        for s in sockets:
            if s.status == psutil.CONN_LISTEN or (s.type == socket.SOCK_DGRAM and s.laddr and not s.raddr):
                found.setdefault((process.pid, name), []).append(s.laddr.ip)
    return found


def test_the_test_sessions_ray_listens_on_loopback_only(ray_session):
    @ray_session.remote
    def pid():
        return os.getpid()

    ray_session.get(pid.remote())  # a worker is up
    found = listeners(psutil.Process())
    ray_processes = {key: hosts for key, hosts in found.items() if key[0] != os.getpid() or hosts}
    assert any("gcs_server" in name for _, name in ray_processes), found
    outside = {key: hosts for key, hosts in found.items() if not all(map(is_loopback, hosts))}
    assert outside == {}


def run_cli_subprocess(tmp_path, data: dict, seconds: float = 400, watch=None) -> tuple:
    """`pixcap run` on a Ray of its own; watch(process) is called every half second while it runs."""
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    driver = psutil.Popen([sys.executable, "-m", "pixcap.cli.main", "run", str(tmp_path / "job.yaml")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**env, "TOKENIZERS_PARALLELISM": "false"})
    deadline = time.monotonic() + seconds
    while driver.poll() is None and time.monotonic() < deadline:
        if watch is not None:
            watch(driver)
        time.sleep(0.5)
    if driver.poll() is None:
        driver.kill()
    out, err = driver.communicate()
    return driver.returncode, out, err


class OwnRayRun(NamedTuple):
    code: int
    out: str
    err: str
    listeners: dict  # {(pid, name): {address, ...}} of the run's processes, seen while it ran
    output: object  # the run's output folder (pathlib.Path)


@pytest.fixture(scope="module")
def own_ray_run(tmp_path_factory, models_cache, ray_subprocess) -> OwnRayRun:
    """One `pixcap run` on a Ray of its own, watched for listeners, whose job asks every CPU of the
    machine for each actor: the tests below read it (a run with a Ray of its own costs 20-30 s)."""
    tmp_path = tmp_path_factory.mktemp("own-ray")
    seen = {}

    def watch(driver):
        for key, hosts in listeners(driver).items():
            seen.setdefault(key, set()).update(hosts)

    data = collection_job(tmp_path, models_cache, ray={"cpus_per_actor": os.cpu_count(), "cpus_per_task": 1})
    code, out, err = run_cli_subprocess(tmp_path, data, seconds=400, watch=watch)
    return OwnRayRun(code, out, err, seen, tmp_path / "out")


@pytest.mark.slow
def test_a_run_with_a_ray_of_its_own_listens_on_loopback_and_logs_ray_to_a_file(own_ray_run):
    """Every listener of the Ray a run starts is on loopback, and Ray's output is in
    OUT/_logs/ray.log, not on the console."""
    code, out, err, seen, output = own_ray_run
    assert code == 0, err[-3000:]
    assert "inputs 4 = written 4 + rejected 0" in out
    assert any("gcs_server" in name for _, name in seen) and any("raylet" in name for _, name in seen), seen
    outside = {key: hosts for key, hosts in seen.items() if not all(map(is_loopback, hosts))}
    assert outside == {}, outside
    log = (output / "_logs" / "ray.log").read_text()
    assert "Started a local Ray instance" in log
    for noise in ("Started a local Ray instance", "Token authentication", "(raylet)", "Running Dataset", "worker.py:"):
        assert noise not in err, err


@pytest.mark.slow
def test_a_job_asking_more_cpus_than_the_cluster_has_runs_with_one_line_of_warning(own_ray_run):
    """Each actor asks for every CPU of the machine: Ray would wait forever; pixcap scales the
    requests down, says so, and finishes."""
    code, out, err, _, _ = own_ray_run
    assert code == 0, err[-3000:]
    assert "inputs 4 = written 4 + rejected 0" in out
    warnings = [line for line in err.splitlines() if line.startswith("pixcap: warning: ")]
    assert len(warnings) == 1 and f"3 actors x ray.cpus_per_actor={os.cpu_count()} + ray.cpus_per_task=1" in warnings[0], err


def test_native_writes_to_fd_2_go_to_the_log_and_python_s_stderr_stays_on_the_console(tmp_path, capfd):
    import os
    import sys

    from pixcap.pipeline.engine import NATIVE_LOG_NAME, native_output_to

    with native_output_to(str(tmp_path)) as console:
        os.write(2, b"[E core_worker.cc] constructor arguments in the object store\n")  # as Ray's C++ does
        print("pixcap: parts 0/2", file=sys.stderr)
        assert console is sys.stderr
    print("pixcap: after", file=sys.stderr)
    shown = capfd.readouterr().err
    assert "pixcap: parts 0/2" in shown and "pixcap: after" in shown
    assert "core_worker" not in shown
    assert "core_worker" in (tmp_path / NATIVE_LOG_NAME).read_text()


def test_verbose_leaves_fd_2_where_it_is(capfd):
    import os

    from pixcap.pipeline.engine import native_output_to

    with native_output_to(None):
        os.write(2, b"native line\n")
    assert "native line" in capfd.readouterr().err
