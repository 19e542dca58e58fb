"""An S3 server on loopback for the tests: moto's, started once per session.

The AWS variables are set when this module is imported, before any Ray worker starts, because
workers take their environment from the raylet: s3fs in a read task or a commit task finds the
endpoint and credentials where every S3 tool looks for them.
"""
import os
import uuid

import pytest

from bench.loopback import LOOPBACK, free_port, s3_environment, start_moto, stop

PORT = int(os.environ.get("PIXCAP_TEST_S3_PORT") or free_port())
ENDPOINT = f"http://{LOOPBACK}:{PORT}"
# PIXCAP_TEST_S3_PORT: subprocesses and re-imports agree on the port
os.environ.update({"PIXCAP_TEST_S3_PORT": str(PORT), **s3_environment(ENDPOINT)})


@pytest.fixture(scope="session")
def s3_server():
    """The endpoint of a moto S3 server listening on 127.0.0.1 only."""
    server = start_moto(PORT)
    yield ENDPOINT
    stop(server)


@pytest.fixture
def bucket(s3_server):
    """A fresh bucket: s3://NAME."""
    import fsspec

    name = f"pixcap-{uuid.uuid4().hex[:10]}"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(name)
    fs.invalidate_cache()
    return f"s3://{name}"


def upload(local_folder, url: str) -> None:
    """Copy a local folder's files to an S3 URL, keeping relative paths."""
    import fsspec

    fs = fsspec.filesystem("s3")
    for root, _, files in os.walk(local_folder):
        for name in files:
            path = os.path.join(root, name)
            fs.put_file(path, f"{url}/{os.path.relpath(path, local_folder)}")
    fs.invalidate_cache()
