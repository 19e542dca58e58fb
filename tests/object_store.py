"""An S3 server on loopback for the tests: moto's, started once per session.

The AWS variables are set when this module is imported, before any Ray worker starts, because
workers take their environment from the raylet: s3fs in a read task or a commit task finds the
endpoint and credentials where every S3 tool looks for them.
"""
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = int(os.environ.get("PIXCAP_TEST_S3_PORT") or _free_port())
ENDPOINT = f"http://127.0.0.1:{PORT}"
os.environ.update({
    "PIXCAP_TEST_S3_PORT": str(PORT),  # subprocesses and re-imports agree on the port
    "AWS_ENDPOINT_URL": ENDPOINT,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
})


@pytest.fixture(scope="session")
def s3_server():
    """The endpoint of a moto S3 server listening on 127.0.0.1 only."""
    moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(PORT)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError(f"moto_server did not start on 127.0.0.1:{PORT}")
            time.sleep(0.2)
    yield ENDPOINT
    server.terminate()
    server.wait(timeout=10)


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
