"""A real output for the report tests: the pipeline run once on the end-to-end tests' collection
(two SA-1B tars and a folder, three broken inputs among them) with the tiny models."""
import pytest

from tests.pipeline.collection import write_collection


@pytest.fixture(scope="session")
def pipeline_output(tmp_path_factory, ray_session, models_cache):
    from pixcap.pipeline.run import run_job

    from tests.pipeline.test_end_to_end import job_for

    root = tmp_path_factory.mktemp("analysis-collection")
    write_collection(root)
    out = root / "out"
    manifest = run_job(job_for(root, out, models_cache, shard_size=4))
    return out, manifest
