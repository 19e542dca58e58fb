"""pixcap: PixArt-alpha training data (LLaVA captions, concept density, WebDataset shards) and a trainer.

The Python API is what the commands call, importable from here; see the README's "Python API":

    import pixcap
    job = pixcap.load_job(pixcap.read_job_yaml("jobs/local.yaml"))
    manifest = pixcap.run_job(job)
    table = pixcap.concept_density(job.output)

Names are imported on first use: `import pixcap` stays as light as `pixcap --help`, and torch or
Ray load only when something that needs them is asked for.
"""
from __future__ import annotations

import importlib
import typing

# public name -> the module that defines it
_API = {
    "Job": "pixcap.schemas.job",
    "JobError": "pixcap.schemas.job",
    "load_job": "pixcap.schemas.job",
    "read_job_yaml": "pixcap.schemas.job",
    "run_job": "pixcap.pipeline.run",
    "verify_output": "pixcap.output.verify",
    "concept_density": "pixcap.analysis.stats",
    "format_table": "pixcap.analysis.stats",
    "write_report": "pixcap.analysis.report",
    "Selection": "pixcap.schemas.selection",
    "select_subset": "pixcap.subsets.select",
    "TrainJob": "pixcap.schemas.train_job",
    "load_train_job": "pixcap.schemas.train_job",
    "encode_shards": "pixcap.trainer.encode",
    "train": "pixcap.trainer.loop",
    "sample_run": "pixcap.trainer.sampling",
    "EvalJob": "pixcap.schemas.eval_job",
    "load_eval_job": "pixcap.schemas.eval_job",
    "run_eval": "pixcap.evaluation.run",
    "job_path": "pixcap.jobs",
    "shipped_jobs": "pixcap.jobs",
}
__all__ = ["__version__", *_API]


def _version() -> str:
    """The installed distribution's version: pyproject.toml's, in one place."""
    from importlib import metadata

    try:
        return metadata.version("pixcap")
    except metadata.PackageNotFoundError:  # a source tree put on sys.path by hand, never installed
        return "0+unknown"


def __getattr__(name: str) -> typing.Any:
    if name == "__version__":
        value = _version()
    elif name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    else:
        raise AttributeError(f"module 'pixcap' has no attribute {name!r}")
    globals()[name] = value  # once: later lookups do not come back here
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
