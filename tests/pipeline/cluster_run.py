"""Run `pixcap run` on a Ray cluster of a head and two worker nodes on 127.0.0.1, each with its
own raylet and object store, and optionally remove a worker node in the middle of the run.

Run as a script (a separate process, so it never meets the test session's own Ray):
    python -m tests.pipeline.cluster_run JOB.yaml RESULT.json [--remove actor|commit]
`actor` removes the node that holds the caption actor once captioning has started; `commit`
removes the node running a commit task. RESULT.json gets the exit code, stderr's tail, and what
was removed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import ray
from ray.cluster_utils import Cluster

LOOPBACK = {"node_ip_address": "127.0.0.1"}


def _node_of(kind: str):
    """The node id (hex) holding a live caption actor, or running a commit task; None if none."""
    from ray._private import state

    if kind == "actor":
        for actor in state.actors().values():
            if actor.get("State") == "ALIVE" and "CaptionStage" in str(actor.get("ActorClassName", "")) + str(actor.get("Name", "")):
                return actor["Address"]["NodeID"]
        return None
    from ray.util.state import list_tasks

    for task in list_tasks(filters=[("name", "=", "_commit_in_worker"), ("state", "=", "RUNNING")], raise_on_missing_output=False):
        return task.node_id
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("job")
    parser.add_argument("result")
    parser.add_argument("--remove", choices=("actor", "commit"))
    args = parser.parse_args()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **LOOPBACK})
    workers = [cluster.add_node(num_cpus=2, **LOOPBACK) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    removed = None
    driver = subprocess.Popen([sys.executable, "-m", "pixcap.cli.main", "run", args.job, "--address", cluster.address],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while args.remove and removed is None and driver.poll() is None and time.monotonic() < deadline:
            node_id = _node_of(args.remove)
            victim = next((w for w in workers if node_id and w.node_id == node_id), None)
            if victim is not None:
                cluster.remove_node(victim, allow_graceful=False)
                removed = {"kind": args.remove, "node": node_id}
            time.sleep(0.05)
        stdout, stderr = driver.communicate(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
        ray.shutdown()
        cluster.shutdown()
    with open(args.result, "w") as f:
        json.dump({"returncode": driver.returncode, "stdout": stdout[-3000:], "stderr": stderr[-5000:],
                   "removed": removed, "nodes": len(workers) + 1}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
