"""Starting Ray: locally by default, or on the cluster that --address or RAY_ADDRESS names."""
from __future__ import annotations

import os

import ray

from pixcap.schemas import Job, JobError


def start_ray(address, job: Job) -> None:
    if not ray.is_initialized():  # else a caller (a test session, a notebook) already runs Ray
        _init(address, job)
    check_gpus(job)


def _init(address, job: Job) -> None:
    address = address or job.ray.address or os.environ.get("RAY_ADDRESS")
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
