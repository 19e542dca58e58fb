"""Servers on 127.0.0.1 only, for the benchmarks and the tests: moto's S3 server and a Ray cluster of
several nodes, each with its own raylet and object store.

Every server takes free ports, so that a bench or a test runs beside another Ray or server on the
machine. The tests import it as `bench.loopback` (bench/ does not import tests/, so the shared part
lives here).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list:
    """Ports free on loopback now; all held open together, so they are distinct."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def s3_environment(endpoint: str) -> dict:
    """The AWS variables every S3 tool (s3fs in a Ray worker too) finds the endpoint and credentials in.
    Set them before Ray starts: workers take their environment from the raylet."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}


def start_moto(port: int, timeout: float = 30.0) -> subprocess.Popen:
    """moto's S3 server listening on 127.0.0.1:port only, once it accepts connections."""
    moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    server = subprocess.Popen([moto, "-H", LOOPBACK, "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError(f"moto_server did not start on {LOOPBACK}:{port}")
            time.sleep(0.2)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def start_cluster(head_cpus: float, worker_cpus: list, object_store_bytes: int | None = None):
    """A ray.cluster_utils.Cluster on 127.0.0.1: a head with head_cpus and one worker node per entry
    of worker_cpus, each with its own raylet and object store; returns (cluster, worker nodes).

    Ray resolves 127.0.0.1 to the machine's outward address unless it is told that this is no
    cluster, in this process (already imported, Ray read the variable) and in every one the nodes
    start: pixcap's loopback_options says both."""
    from ray.cluster_utils import Cluster

    from pixcap.pipeline.engine import loopback_options

    loopback_options()
    node = {"node_ip_address": LOOPBACK}
    if object_store_bytes:
        node["object_store_memory"] = object_store_bytes
    # Ray gives a head node fixed ports for its API server (8265, started even without the dashboard)
    # and its dashboard agent (52365); another Ray on the machine holds them. Free ones instead.
    ports = dict(zip(("dashboard_port", "dashboard_agent_listen_port"), free_ports(2)))
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": head_cpus, "include_dashboard": False, **ports, **node})
    workers = [cluster.add_node(num_cpus=cpus, **node) for cpus in worker_cpus]
    cluster.wait_for_nodes()
    return cluster, workers
