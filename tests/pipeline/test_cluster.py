"""pixcap on a real multi-node Ray cluster (a head and two worker nodes on 127.0.0.1, separate
raylets and object stores) with its output on S3, as no cluster shares a local disk: the same
output as one node, also when a worker node is lost while it holds a model actor or commits."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


from .test_end_to_end import job_for
from .test_object_store import rows, s3_job

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def single_node(s3_run):
    """The reference: the same job on the test session's one-node Ray (tests/pipeline/conftest.py)."""
    out, _, _ = s3_run
    return rows(out)


def run_on_cluster(tmp_path, inputs_url, out, models_cache, remove=None) -> dict:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(s3_job(inputs_url, out, models_cache).to_dict()))
    result = tmp_path / "result.json"
    command = [sys.executable, "-m", "tests.pipeline.cluster_run", str(job), str(result)]
    subprocess.run(command + (["--remove", remove] if remove else []), cwd=ROOT, check=True, timeout=1200)
    return json.loads(result.read_text())


@pytest.mark.parametrize("remove", ["actor", "commit"])
def test_a_three_node_cluster_gives_the_one_node_output(remove, single_node, s3_collection, tmp_path, models_cache):
    inputs_url, expected = s3_collection
    out = f"s3://pixcap-cluster/three-nodes-{remove or 'whole'}"
    result = run_on_cluster(tmp_path, inputs_url, out, models_cache, remove)
    assert result["returncode"] == 0, result["stderr"]
    if remove:
        assert result["removed"] and result["removed"]["kind"] == remove, result
    found, rejects = rows(out)
    assert (found, rejects) == single_node
    assert len(found) + len(rejects) == expected["inputs"]
