"""What the job asks of the Ray cluster, whether the cluster can ever give it, and what it waits on.

Ray queues a request it cannot place and waits for resources forever, in silence: three actor
pools at `ray.cpus_per_actor=1` on two CPUs never start. So once Ray runs, the job's requests
are placed on the cluster's nodes as they are now (first fit, biggest first):
- GPUs that cannot be placed are refused (JobError, exit code 2): a GPU is not shared.
- CPUs that cannot be placed are scaled down until they fit, with one line of warning. A Ray CPU
  is a scheduling token, not a core of one's own: at a fraction each, the actors and tasks share
  the cores, which is what a user running the default job on a laptop expects.
The job has no memory keys, so memory is not asked for and not checked here.
"""
from __future__ import annotations

import collections
import dataclasses
import math

import ray

from pixcap.schemas import Job, JobError
from pixcap.schemas import stages as registry

CPU_RESOLUTION = 1e-4  # Ray's smallest unit of a resource
SHRINK = 0.9  # each try at fitting CPUs scales them by this
PENDING_STATES = ("DEPENDENCIES_UNREADY", "PENDING_CREATION", "RESTARTING")


def actor_pools(job: Job) -> list:
    """(name, actors, gpus per actor) of the model stage instances the registry lists and the job runs
    (one per captioner, per classifier): what pipeline/graph.py asks Ray for. A backend that runs no
    model (sidecar) asks for no GPU."""
    return [(found.name, found.config.actors, found.gpus()) for found in registry.model_stages(job)]


def wanted_gpus(job: Job) -> dict:
    """{"caption.gpus_per_actor": n, ...} of the stages that ask for GPUs."""
    return {f"{name}.gpus_per_actor": gpus for name, _, gpus in actor_pools(job) if gpus > 0}


def _nodes() -> list:
    """The alive nodes' CPU and GPU totals."""
    return [{"CPU": node["Resources"].get("CPU", 0.0), "GPU": node["Resources"].get("GPU", 0.0)}
            for node in ray.nodes() if node.get("Alive")]


def _fits(nodes: list, actors: list, task_cpus: float) -> bool:
    """Whether every actor finds a node (first fit, biggest first) and one task still finds CPUs."""
    free = [dict(node) for node in nodes]
    for need in sorted(actors, key=lambda n: (n["GPU"], n["CPU"]), reverse=True):
        for node in free:
            if all(node[k] + 1e-9 >= v for k, v in need.items()):
                for k, v in need.items():
                    node[k] -= v
                break
        else:
            return False
    return any(node["CPU"] + 1e-9 >= task_cpus for node in free)


def _actors(job: Job, cpus_per_actor: float, with_gpus: bool = True) -> list:
    return [{"CPU": cpus_per_actor, "GPU": gpus if with_gpus else 0.0}
            for _, count, gpus in actor_pools(job) for _ in range(count)]


def check_gpus(job: Job) -> None:
    """A job asking for GPUs the cluster lacks fails now, not after the actors never start."""
    wanted = wanted_gpus(job)
    if not wanted:
        return
    nodes = _nodes()
    total = sum(node["GPU"] for node in nodes)
    for key, gpus in wanted.items():
        if total == 0:
            raise JobError(f"{key}={gpus} but the Ray cluster has no GPU")
    gpu_actors = [{"CPU": 0.0, "GPU": gpus} for _, count, gpus in actor_pools(job) for _ in range(count) if gpus > 0]
    if not _fits(nodes, gpu_actors, 0.0):
        asked = " + ".join(f"{name}.actors={count} x {name}.gpus_per_actor={gpus:g}"
                           for name, count, gpus in actor_pools(job) if gpus > 0)
        largest = max(node["GPU"] for node in nodes)
        raise JobError(f"{asked} need {sum(a['GPU'] for a in gpu_actors):g} GPUs, each actor's on one node, but the "
                       f"Ray cluster has {total:g} ({largest:g} on its largest node)")


def _floor(value: float) -> float:
    return max(CPU_RESOLUTION, math.floor(value / CPU_RESOLUTION) * CPU_RESOLUTION)


def fit_to_cluster(job: Job, warn) -> Job:
    """The job with CPU requests the cluster can place; warn(line) says what was scaled down."""
    nodes = _nodes()
    actor_cpus, task_cpus = job.ray.cpus_per_actor, job.ray.cpus_per_task
    if _fits(nodes, _actors(job, actor_cpus), task_cpus):
        return job
    total = sum(node["CPU"] for node in nodes)
    actor_count = len(_actors(job, actor_cpus))
    needed = actor_count * actor_cpus + task_cpus
    if total <= 0:
        raise JobError(f"the job needs {needed:g} CPUs ({actor_count} actors and a task) but the Ray cluster has none")
    scale = min(1.0, total / needed)
    while scale > CPU_RESOLUTION and not _fits(nodes, _actors(job, _floor(actor_cpus * scale)), _floor(task_cpus * scale)):
        scale *= SHRINK
    fitted_actor, fitted_task = _floor(actor_cpus * scale), _floor(task_cpus * scale)
    if not _fits(nodes, _actors(job, fitted_actor), fitted_task):
        raise JobError(f"the job's {actor_count} actors cannot be placed on the Ray cluster ({total:g} CPUs)")
    warn(f"pixcap: warning: {actor_count} actors x ray.cpus_per_actor={actor_cpus:g} + ray.cpus_per_task={task_cpus:g} "
         f"need {needed:g} CPUs and the Ray cluster has {total:g}; running with ray.cpus_per_actor={fitted_actor:g} "
         f"and ray.cpus_per_task={fitted_task:g} (the cores are shared)")
    return dataclasses.replace(job, ray=dataclasses.replace(job.ray, cpus_per_actor=fitted_actor, cpus_per_task=fitted_task))


def _shape(bundle: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(bundle.items())) + "}"


def describe_waiting() -> str:
    """One line on what the Ray cluster waits on: actors not yet started, resource requests it
    cannot place now, and what is free; "" when nothing waits or Ray cannot say."""
    if not ray.is_initialized():
        return ""
    said = []
    try:
        from ray._private.state import state

        pending = collections.Counter(actor["ActorClassName"].rpartition("<locals>.")[2]
                                      for actor in state.actor_table(None).values() if actor["State"] in PENDING_STATES)
        if pending:
            said.append("actors not started: " + ", ".join(f"{n} x {name}" for name, n in sorted(pending.items())))
    except Exception:  # internal API: its absence must not break the watchdog
        pass
    try:
        from ray.autoscaler.v2.sdk import get_cluster_status

        demands = get_cluster_status(ray.get_runtime_context().gcs_address).resource_demands
        requests = collections.Counter()
        for demand in demands.ray_task_actor_demand:
            for request in demand.bundles_by_count:
                requests[_shape(request.bundle)] += request.count
        if requests:
            said.append("requests waiting for resources: " + ", ".join(f"{n} x {shape}" for shape, n in sorted(requests.items())))
    except Exception:
        pass
    if not said:
        return ""
    try:
        total, free = ray.cluster_resources(), ray.available_resources()
        said.append("free now: " + ", ".join(f"{free.get(k, 0):g} of {total.get(k, 0):g} {k}" for k in ("CPU", "GPU")))
    except Exception:
        pass
    return "; ".join(said)
