"""pixcap on a real multi-node Ray cluster (a head and two worker nodes on 127.0.0.1, separate
raylets and object stores) with its output on S3, as no cluster shares a local disk: the same
output as one node, also when a worker node is lost while it holds a model actor or commits."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .test_object_store import rows, s3, s3_job

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def single_node(s3_run):
    """The reference: the same job on the test session's one-node Ray (tests/pipeline/conftest.py)."""
    out, _, _ = s3_run
    return rows(out)


REMOVALS = ["actor", "commit"]


@pytest.fixture(scope="module")
def cluster_runs(s3_collection, tmp_path_factory, models_cache) -> dict:
    """{remove: (result, output URL)}: the job once per removal, one after the other on one
    three-node cluster (tests/pipeline/cluster_run.py starts it once and replaces a lost node)."""
    inputs_url, _ = s3_collection
    s3().mkdir("pixcap-cluster")
    folder = tmp_path_factory.mktemp("cluster")
    outs, specs = {}, []
    for remove in REMOVALS:
        outs[remove] = f"s3://pixcap-cluster/three-nodes-{remove}"
        job = folder / f"job-{remove}.yaml"
        job.write_text(yaml.safe_dump(s3_job(inputs_url, outs[remove], models_cache).to_dict()))
        specs.append(f"{job}:{remove}")
    result = folder / "result.json"
    command = [sys.executable, "-m", "tests.pipeline.cluster_run", str(result), *specs]
    subprocess.run(command, cwd=ROOT, check=True, timeout=1800)
    return {remove: (run, outs[remove]) for remove, run in zip(REMOVALS, json.loads(result.read_text()))}


@pytest.mark.parametrize("remove", REMOVALS)
def test_a_three_node_cluster_gives_the_one_node_output(remove, single_node, s3_collection, cluster_runs):
    _, expected = s3_collection
    result, out = cluster_runs[remove]
    assert result["returncode"] == 0, result["stderr"]
    assert result["nodes"] == 2, result  # a head and the worker left of two
    assert result["removed"] and result["removed"]["kind"] == remove, result
    found, rejects = rows(out)
    assert (found, rejects) == single_node
    assert len(found) + len(rejects) == expected["inputs"]
