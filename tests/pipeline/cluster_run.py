"""Run `pixcap run` on a Ray cluster of a head and two worker nodes on 127.0.0.1, each with its
own raylet and object store, and optionally remove a worker node in the middle of the run.

Run as a script (a separate process, so it never meets the test session's own Ray):
    python -m tests.pipeline.cluster_run RESULT.json JOB.yaml:REMOVE [JOB.yaml:REMOVE ...]
REMOVE is `actor` (remove the node that holds the caption actor once captioning has started),
`commit` (remove the node running a commit task, held there by the `hold` failpoint) or `none`.
The jobs run one after the other on one cluster, started once (it takes tens of seconds on two
cores); a removed worker node is replaced by a fresh one before the next job, so each job starts
on a head and two workers. RESULT.json gets, per job, the exit code, stderr's tail, and what was
removed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import ray

from bench.loopback import LOOPBACK, start_cluster
from pixcap.output import failpoints

WORKER_CPUS = 2
# How soon the head's GCS declares a killed node dead: after this many failed health checks this many
# ms apart (Ray's defaults, 5 x 3000 ms, held each removal's recovery 11 s longer). A check fails at
# once on a node whose raylet is gone, while a live but busy raylet still has Ray's 10 s per check.
NODE_HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}


def _node_of(kind: str, held: str):
    """The node id (hex) holding a live caption actor, or running the held commit; None if none."""
    from ray._private import state

    if kind == "actor":
        for actor in state.actors().values():
            if actor.get("State") == "ALIVE" and "CaptionStage" in str(actor.get("ActorClassName", "")) + str(actor.get("Name", "")):
                return actor["Address"]["NodeID"]
        return None
    try:
        with open(held) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def run_job(cluster, workers: list, job: str, remove: str, held: str) -> dict:
    """`pixcap run job` on the cluster as a subprocess, removing a worker node as `remove` says;
    a removed node is taken out of `workers`."""
    removed = None
    env = dict(os.environ)
    if remove == "commit":  # the first commit task waits, its node id written, to be removed
        env.update({failpoints.ENV: "shard_commit:1:hold", failpoints.ONCE_ENV: held})
    driver = subprocess.Popen([sys.executable, "-m", "pixcap.cli.main", "run", job, "--address", cluster.address],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 600
        while remove and removed is None and driver.poll() is None and time.monotonic() < deadline:
            node_id = _node_of(remove, held)
            victim = next((w for w in workers if node_id and w.node_id == node_id), None)
            if victim is not None:
                cluster.remove_node(victim, allow_graceful=False)
                workers.remove(victim)
                removed = {"kind": remove, "node": node_id}
            time.sleep(0.05)
        stdout, stderr = driver.communicate(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
    return {"returncode": driver.returncode, "stdout": stdout[-3000:], "stderr": stderr[-5000:],
            "removed": removed, "nodes": len(workers) + 1}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("result")
    parser.add_argument("jobs", nargs="+", help="JOB.yaml:actor|commit|none")
    args = parser.parse_args()
    os.environ.update(NODE_HEALTH_CHECKS)  # read by the GCS the cluster starts
    cluster, workers = start_cluster(0, [WORKER_CPUS, WORKER_CPUS])
    ray.init(address=cluster.address, log_to_driver=False)
    results = []
    try:
        for number, spec in enumerate(args.jobs):
            job, _, remove = spec.rpartition(":")
            while len(workers) < 2:  # a fresh node for the one the last job lost
                workers.append(cluster.add_node(num_cpus=WORKER_CPUS, node_ip_address=LOOPBACK))
            cluster.wait_for_nodes()
            held = f"{args.result}.{number}.held"
            results.append(run_job(cluster, workers, job, None if remove == "none" else remove, held))
    finally:
        ray.shutdown()
        cluster.shutdown()
    with open(args.result, "w") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
