"""Starting Ray: locally by default, or on the cluster that --address or RAY_ADDRESS names."""
from __future__ import annotations

import os
import socket

import ray

from pixcap.schemas import Job, JobError


def start_ray(address, job: Job) -> None:
    address = address or job.ray.address or os.environ.get("RAY_ADDRESS")
    _check_reachable(address)
    if not ray.is_initialized():  # else a caller (a test session, a notebook) already runs Ray
        _init(address)
    check_gpus(job)


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
    for key, wanted in (("caption.gpus_per_actor", job.caption.gpus_per_actor if job.caption.backend == "hf" else 0),
                        ("clip.gpus_per_actor", job.clip.gpus_per_actor)):
        if wanted > 0 and gpus == 0:
            raise JobError(f"{key}={wanted} but the Ray cluster has no GPU")
