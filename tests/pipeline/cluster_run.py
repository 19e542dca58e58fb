"""Run `pixcap run` on a Ray cluster of a head and two worker nodes on 127.0.0.1, each with its
own raylet and object store, and optionally remove a worker node in the middle of the run.

Run as a script (a separate process, so it never meets the test session's own Ray):
    python -m tests.pipeline.cluster_run JOB.yaml RESULT.json [--remove actor|commit]
`actor` removes the node that holds the caption actor once captioning has started; `commit`
removes the node running a commit task, held there by the `hold` failpoint. RESULT.json gets the exit code, stderr's tail, and what
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

from bench.loopback import start_cluster
from pixcap.output import failpoints


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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("job")
    parser.add_argument("result")
    parser.add_argument("--remove", choices=("actor", "commit"))
    args = parser.parse_args()
    cluster, workers = start_cluster(0, [2, 2])
    ray.init(address=cluster.address, log_to_driver=False)
    removed = None
    held = args.result + ".held"
    env = dict(os.environ)
    if args.remove == "commit":  # the first commit task waits, its node id written, to be removed
        env.update({failpoints.ENV: "shard_commit:1:hold", failpoints.ONCE_ENV: held})
    driver = subprocess.Popen([sys.executable, "-m", "pixcap.cli.main", "run", args.job, "--address", cluster.address],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 600
        while args.remove and removed is None and driver.poll() is None and time.monotonic() < deadline:
            node_id = _node_of(args.remove, held)
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
