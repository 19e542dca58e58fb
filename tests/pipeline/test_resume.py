"""A driver killed with SIGKILL partway through; the rerun equals an uninterrupted run."""
import glob
import os
import signal
import subprocess
import sys

import duckdb
import pytest
import yaml

from pixcap.pipeline import failpoints
from pixcap.pipeline.run import run_job

from .collection import write_collection
from .test_end_to_end import job_for

pytestmark = pytest.mark.slow


def shard_contents(out):
    """{shard: [(key, caption), ...]} in stored order, from the stats parquet."""
    rows = duckdb.sql(f"select shard, key, caption from '{out}/stats/*.parquet' order by shard, key").fetchall()
    contents = {}
    for shard, key, caption in rows:
        contents.setdefault(shard, []).append((key, caption))
    return contents


def test_sigkilled_driver_resumes_to_the_same_output(tmp_path, ray_session, models_cache):
    write_collection(tmp_path)
    reference = run_job(job_for(tmp_path, tmp_path / "reference", models_cache))

    killed_out = tmp_path / "killed"
    job = job_for(tmp_path, killed_out, models_cache).to_dict()
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job))
    address = ray_session.get_runtime_context().gcs_address
    # The driver SIGKILLs itself when the second fragment reaches it: inputs are in flight,
    # some finished in fragments, none or few committed.
    driver = subprocess.run(
        [sys.executable, "-m", "pixcap.pipeline.cli", "run", str(job_file), "--address", address],
        env={**os.environ, failpoints.ENV: "fragment:2"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300,
    )
    assert driver.returncode == -signal.SIGKILL, driver.stderr.decode()[-2000:]
    fragments = os.path.join(killed_out, "_work", "fragments", "*.parquet")
    assert glob.glob(fragments)
    committed_before = len(glob.glob(os.path.join(killed_out, "stats", "*.parquet")))
    assert committed_before < len(reference["shards"])

    resumed = run_job(job_for(tmp_path, killed_out, models_cache))
    assert resumed["totals"] == reference["totals"]
    assert shard_contents(killed_out) == shard_contents(tmp_path / "reference")
    keys = duckdb.sql(f"select key from '{killed_out}/stats/*.parquet'").fetchall()
    assert len(keys) == len(set(keys))
    assert not glob.glob(fragments)
