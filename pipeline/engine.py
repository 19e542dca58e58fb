"""Starting Ray: locally by default, or on the cluster that --address or RAY_ADDRESS names."""
from __future__ import annotations

import os
import socket

import ray

from pixcap.schemas import Job, JobError


def _address(address, job: Job):
    return address or job.ray.address or os.environ.get("RAY_ADDRESS")


def start_ray(address, job: Job) -> None:
    address = _address(address, job)
    _check_reachable(address)
    if not ray.is_initialized():  # else a caller (a test session, a notebook) already runs Ray
        _init(address)
    check_gpus(job)


def check_cluster(address, job: Job) -> None:
    """Refuse an unreachable address, or GPUs the cluster lacks, before anything is written.
    Ray itself is started here only for a job that asks for GPUs (to count them); otherwise it
    starts when there is work, so a rerun over a finished output never starts it."""
    _check_reachable(_address(address, job))
    if _wants_gpus(job):
        start_ray(address, job)


def _wants_gpus(job: Job) -> dict:
    return {key: wanted for key, wanted in (
        ("caption.gpus_per_actor", job.caption.gpus_per_actor if job.caption.backend == "hf" else 0),
        ("clip.gpus_per_actor", job.clip.gpus_per_actor)) if wanted > 0}


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A host:port address (or ray://host:port) that nothing answers on fails in seconds;
    ray.init would retry it for minutes."""
    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise JobError(f"--address {address}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise JobError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


def _init(address) -> None:
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=True, ignore_reinit_error=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise JobError(f"cannot reach the Ray cluster at {address}: {str(e).splitlines()[0]}") from None


def check_gpus(job: Job) -> None:
    """A job asking for GPUs on a cluster with none fails now, not after the actors never start."""
    gpus = ray.cluster_resources().get("GPU", 0)
    for key, wanted in _wants_gpus(job).items():
        if gpus == 0:
            raise JobError(f"{key}={wanted} but the Ray cluster has no GPU")
