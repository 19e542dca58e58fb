"""A real output for the report tests: the pipeline run once on the end-to-end tests' collection
(two SA-1B tars and a folder, three broken inputs among them) with the tiny models."""
import pytest

from tests.pipeline.collection import write_collection


@pytest.fixture(scope="session")
def pipeline_output(tmp_path_factory, ray_session, models_cache):
    from pixcap.pipeline.run import run_job
    from pixcap.schemas import load_job

    root = tmp_path_factory.mktemp("analysis-collection")
    write_collection(root)
    out = root / "out"
    job = load_job({
        "inputs": [str(root / "tars" / "sa_*.tar"), f"file://{root / 'photos'}"],
        "output": str(out),
        "shard_size": 4,
        "models_cache": models_cache,
        "caption": {"max_new_tokens": 8, "batch_size": 4},
        "clip": {"grounding_threshold": 0.0},
        "ray": {"cpus_per_task": 0.25, "cpus_per_actor": 0.25},
    })
    manifest = run_job(job)
    return out, manifest
