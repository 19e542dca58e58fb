"""`pixcap run` on Ray clusters on 127.0.0.1: one node against a head and two worker nodes, a local
output against S3, and what crosses Ray's object store (a benchmark).

    .venv/bin/python -m bench.bench_cluster [--images 384] [--tars 8] [--shard-size 16] [--rounds 2]

Every run captions the same SA-1B-style tars (the demo photographs, 35-265 KB JPEGs) with the
tiny models, from a fresh output, with the driver as a subprocess (`python -m pixcap.cli.main run
JOB --address ADDR`) on a cluster started beforehand, so its start-up is not counted:
  1. one node with 2 CPUs, output on the local disk;
  2. a head with 0 CPUs and two worker nodes of 1 CPU each (each its own raylet and object
     store), output on the local disk;
  3. run 1 with the output on moto's S3 server.
The three run in turn, --rounds times, and the best time of each is shown: on two shared cores one
run of a configuration varies by 20 % and more. inputs/s is over the driver's whole life (imports,
models, commits, manifest); "graph" is Ray Data's own execution time. The bytes per input by
operator are Ray Data's per-operator stats (the size of the blocks each operator put in the object
store), read from the stats summary Ray Data keeps on the cluster when
RAY_DATA_ENABLE_STATS_SUMMARY_COLLECTION=1 is set for the driver; no pipeline code is changed.
"""
from __future__ import annotations

import argparse
import io
import ipaddress
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from bench.bench_pipeline import write_tars
from bench.loopback import LOOPBACK, free_port, s3_environment, start_cluster, start_moto, stop
from pixcap.output.manifest import read_manifest
from pixcap.output.storage import Storage
from pixcap.schemas import records as R
from pixcap.schemas.manifest import STATS_DIR

OBJECT_STORE_BYTES = 256 << 20  # per node
STATS_ENV = {"RAY_DATA_ENABLE_STATS_SUMMARY_COLLECTION": "1"}
LISTENERS_EVERY_S = 10
DRIVER_TIMEOUT_S = 600


def photographs(count: int) -> list:
    """`count` JPEGs: the demo photographs (as they are, mirrored, cropped) over and over."""
    from pixcap.demo.sa1b import JPEG_QUALITY, demo_images

    encoded = []
    for image in demo_images():
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
        encoded.append(buffer.getvalue())
    return [encoded[i % len(encoded)] for i in range(count)]


def job_file(folder: Path, inputs: str, output: str, shard_size: int) -> Path:
    path = folder / f"job-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({
        "inputs": [inputs], "output": output, "shard_size": shard_size, "progress_seconds": 30,
        "caption": {"backend": "hf", "model": "tiny:llava", "max_new_tokens": 24, "batch_size": 8},
        "clip": {"model": "tiny:clip", "pretrained": "tiny:clip"},
        "ray": {"cpus_per_task": 0.5, "cpus_per_actor": 0.5},
    }))
    return path


def listening_sockets() -> set:
    """(address, port, pid) of the listening sockets of this process's descendants: Ray's nodes and
    their workers, moto."""
    import psutil

    pids = {child.pid for child in psutil.Process().children(recursive=True)}
    return {(c.laddr.ip, c.laddr.port, c.pid) for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids}


def on_loopback(ip: str) -> bool:
    """127.0.0.1, also as an IPv6 socket's ::ffff:127.0.0.1."""
    address = ipaddress.ip_address(ip)
    return str(getattr(address, "ipv4_mapped", None) or address) == LOOPBACK


def run_on_cluster(name: str, head_cpus: float, worker_cpus: list, job: Path) -> dict:
    """Start the cluster, run the driver on it, and read back Ray Data's stats summary."""
    import ray
    from ray.data import list_stats_summaries

    cluster, _ = start_cluster(head_cpus, worker_cpus, OBJECT_STORE_BYTES)
    try:
        command = [sys.executable, "-m", "pixcap.cli.main", "run", str(job), "--address", cluster.address]
        start = time.perf_counter()
        driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, **STATS_ENV})
        listeners = set()
        while True:  # look at the listening sockets now and then while the workers are up
            try:
                _, stderr = driver.communicate(timeout=LISTENERS_EVERY_S)
                break
            except subprocess.TimeoutExpired:
                listeners.update(listening_sockets())
                if time.perf_counter() - start > DRIVER_TIMEOUT_S:
                    driver.kill()
                    driver.communicate()
                    raise RuntimeError(f"{name}: pixcap run still running after {DRIVER_TIMEOUT_S} s") from None
        seconds = time.perf_counter() - start
        if driver.returncode != 0:
            raise RuntimeError(f"{name}: pixcap run exited {driver.returncode}:\n{stderr[-3000:]}")
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        summaries = list_stats_summaries()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"name": name, "seconds": seconds, "summary": summaries[-1], "listeners": sorted(listeners)}


def operators(summary) -> list:
    """Each operator that ran tasks, in graph order (a summary holds its last operator, its parents
    the ones before): name, bytes of its output blocks, blocks, rows, tasks, most rows in one task,
    nodes its tasks ran on."""
    found = [op for parent in summary.parents for op in operators(parent)]
    for op in summary.operators_stats:
        if op.output_size_bytes is None or op.task_rows is None:
            continue
        found.append({"name": op.operator_name, "bytes": op.output_size_bytes.sum, "blocks": op.output_size_bytes.count,
                      "rows": op.output_num_rows.sum, "tasks": op.task_rows.count, "task_rows_max": op.task_rows.max,
                      "nodes": op.node_count.count if op.node_count else 0})
    return found


def output_rows(url: str) -> dict:
    """{key: caption} over the output's stats, and its manifest's totals."""
    storage = Storage(url)
    rows = {}
    for name in storage.listdir(STATS_DIR):
        with storage.open(f"{STATS_DIR}/{name}") as f:
            table = pq.read_table(f, columns=[R.KEY, R.CAPTION])
        rows.update(zip(table.column(R.KEY).to_pylist(), table.column(R.CAPTION).to_pylist()))
    return rows, read_manifest(storage)["totals"]


# name, head CPUs, worker nodes' CPUs, output on S3
CONFIGS = (("one node", 2, [], False), ("head + 2 workers", 0, [1, 1], False), ("one node, S3", 2, [], True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=384)
    parser.add_argument("--tars", type=int, default=8)
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="each configuration once a round, interleaved")
    args = parser.parse_args()
    begin = time.perf_counter()
    port = free_port()
    # Before any Ray starts: workers take the raylet's environment (the local runs never use it).
    os.environ.update(s3_environment(f"http://{LOOPBACK}:{port}"))
    moto = start_moto(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            import fsspec

            root = Path(tmp)
            (root / "in").mkdir()
            write_tars(root / "in", photographs(args.images), per_tar=-(-args.images // args.tars))
            tars = len(list((root / "in").glob("sa_*.tar")))
            inputs = str(root / "in" / "sa_*.tar")
            fsspec.filesystem("s3").mkdir("pixcap-bench")
            runs, results = {name: [] for name, *_ in CONFIGS}, {}
            for round_ in range(args.rounds):
                for name, head_cpus, worker_cpus, on_s3 in CONFIGS:
                    folder = f"{name.replace(' ', '-').replace(',', '').replace('+', 'and')}-{round_}"
                    output = f"s3://pixcap-bench/{folder}" if on_s3 else str(root / folder)
                    runs[name].append(run_on_cluster(name, head_cpus, worker_cpus,
                                                     job_file(root, inputs, output, args.shard_size)))
                    results[f"{name} #{round_ + 1}"] = output_rows(output)
    finally:
        stop(moto)
    report(runs, results, tars, args, time.perf_counter() - begin)


def report(runs: dict, results: dict, tars: int, args, wall: float) -> None:
    count = next(iter(results.values()))[1]["inputs"]
    print(f"cluster: {count} inputs in {tars} tars, shard size {args.shard_size}, tiny models, on {os.cpu_count()} "
          f"cores, {OBJECT_STORE_BYTES >> 20} MiB object store a node; driver start-up included, cluster start-up "
          f"not; best of {args.rounds} interleaved rounds (every round's driver seconds in brackets)")
    print(f"  {'run':<18} {'driver s':>9} {'inputs/s':>9} {'graph s':>8} {'graph inputs/s':>15}")
    figures = {"inputs": count, "tars": tars, "cores": os.cpu_count(), "rounds": args.rounds}
    best = {name: min(tries, key=lambda run: run["seconds"]) for name, tries in runs.items()}
    base = best[CONFIGS[0][0]]
    for name, run in best.items():
        graph = min(r["summary"].time_total_s for r in runs[name])
        each = ", ".join(f"{r['seconds']:.1f}" for r in runs[name])
        print(f"  {name:<18} {run['seconds']:>9.1f} {count / run['seconds']:>9.2f} {graph:>8.1f} "
              f"{count / graph:>15.2f}   x{base['seconds'] / run['seconds']:.2f} of one node  [{each}]")
        key = name.replace(" + ", "_").replace(", ", "_").replace(" ", "_").lower()
        figures[key] = {"driver_s": round(run["seconds"], 1), "inputs_per_s": round(count / run["seconds"], 2),
                        "graph_s": round(graph, 1), "graph_inputs_per_s": round(count / graph, 2),
                        "driver_s_each": [round(r["seconds"], 1) for r in runs[name]]}
    every = [run for tries in runs.values() for run in tries]
    seen = [socket for run in every for socket in run["listeners"]]
    elsewhere = [f"{ip}:{port} (pid {pid})" for ip, port, pid in seen if not on_loopback(ip)]
    print(f"  listening sockets seen during the runs: {len(seen)}, "
          + (f"NOT on {LOOPBACK}: {', '.join(elsewhere)}" if elsewhere else f"all on {LOOPBACK}"))
    figures["servers_on_loopback_only"] = not elsewhere

    base, cluster = runs[CONFIGS[0][0]][0], runs[CONFIGS[1][0]][0]
    print(f"\nbytes per input put in Ray's object store, by operator (Ray Data's output block sizes, first "
          f"'{base['name']}' run), and where the tasks ran:")
    print(f"  {'operator':<66} {'bytes/input':>11} {'blocks':>6} {'tasks':>5}   {cluster['name']}: tasks on nodes")
    by_operator = {}
    spread = {op["name"]: op for op in operators(cluster["summary"])}
    for op in operators(base["summary"]):
        by_operator[op["name"]] = round(op["bytes"] / count)
        other = spread.get(op["name"], {})
        print(f"  {op['name']:<66} {op['bytes'] / count:>11,.0f} {op['blocks']:>6} {op['tasks']:>5}   "
              f"{other.get('tasks', '-')} on {other.get('nodes', '-')}")
    print(f"  {'sum':<66} {sum(by_operator.values()):>11,}")
    figures["bytes_per_input"] = by_operator
    figures["bytes_per_input_sum"] = sum(by_operator.values())

    print(f"\nread tasks per input part ({tars} parts):")
    figures["read_tasks"] = {}
    for name, tries in runs.items():
        reads = [op for run in tries for op in operators(run["summary"]) if "_read" in op["name"]]
        tasks = [op["tasks"] for op in reads]
        verdict = "one per part" if set(tasks) == {tars} else "NOT one per part"
        most, nodes = max(op["task_rows_max"] for op in reads), max(op["nodes"] for op in reads)
        print(f"  {name:<18} {' / '.join(map(str, tasks))} task(s) a run, up to {most} inputs in one, "
              f"on {nodes} node(s): {verdict}  [{reads[0]['name']}]")
        figures["read_tasks"][name] = tasks

    first = next(iter(results))
    reference = results[first][0]
    same = {name: rows == reference for name, (rows, _) in results.items() if name != first}
    print(f"\noutputs: {len(reference)} rows in the stats of '{first}'; keys and captions equal to them: "
          + ", ".join(f"{name}: {'yes' if equal else 'NO'}" for name, equal in same.items()))
    counted = {(totals["written"], totals["rejected"], totals["shards"]) for _, totals in results.values()}
    print("  " + "; ".join(f"written {w}, rejected {r}, shards {n}" for w, r, n in sorted(counted))
          + (" in every run" if len(counted) == 1 else ": the runs DIFFER"))
    figures["outputs_equal"] = all(same.values())
    figures["bench_wall_s"] = round(wall, 1)
    print(f"bench wall time {wall:.0f} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
