"""Session fixtures of the pipeline tests on S3 (moto's server on 127.0.0.1): the end-to-end
collection uploaded once, and run once from S3 to S3 on the session's Ray. test_object_store.py
and test_cluster.py (whose one-node reference it is) share the run."""
import uuid

import pytest

from .collection import write_collection


@pytest.fixture(scope="session")
def s3_collection(tmp_path_factory, s3_server, ray_session):
    """(s3://BUCKET/c, expected): tests/pipeline/collection.py's collection, uploaded."""
    from tests.object_store import upload

    from .test_object_store import s3

    root = tmp_path_factory.mktemp("s3-collection")
    expected = write_collection(root)
    bucket = f"pixcap-in-{uuid.uuid4().hex[:8]}"
    s3().mkdir(bucket)
    upload(root, f"s3://{bucket}/c")
    return f"s3://{bucket}/c", expected


@pytest.fixture(scope="session")
def s3_run(s3_collection, models_cache):
    """(s3://pixcap-out/whole, manifest, expected): the collection run once from S3 to S3. Shared:
    a test may change the output's files (test_stats_and_verify_read_the_output_on_s3 damages a
    tar), never its stats or rejects, which the others compare against."""
    import io

    from pixcap.pipeline.run import run_job

    from .test_object_store import s3, s3_job

    inputs_url, expected = s3_collection
    s3().mkdir("pixcap-out")
    out = "s3://pixcap-out/whole"
    manifest = run_job(s3_job(inputs_url, out, models_cache), stream=io.StringIO())
    return out, manifest, expected
