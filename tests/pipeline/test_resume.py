"""A driver killed with SIGKILL at several points; the rerun equals an uninterrupted run.

The helpers and the shared reference run are used by test_faults.py too.
"""
import glob
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile

import pyarrow.parquet as pq
import pytest
import yaml

from pixcap.output import failpoints
from pixcap.schemas.manifest import LOCK_NAME
from pixcap.pipeline.run import run_job
from pixcap.schemas.manifest import TMP_SUFFIX, SHARD_META_BYTES, SHARD_META_REJECTED, SHARD_META_SHA256

from .test_end_to_end import job_for

pytestmark = pytest.mark.slow


@pytest.fixture
def reference(pipeline_run):
    """(collection root, output, manifest) of one uninterrupted run: the session's pipeline_run
    (tests/conftest.py), shared with test_faults.py, the end-to-end and the report tests. The
    crash tests read the same inputs and write their outputs beside it, under root."""
    return pipeline_run.root, pipeline_run.out, pipeline_run.manifest


def contents(out):
    """{shard: [row, ...]} in stored order from the stats parquets, and the rejects, sorted."""
    shards = {}
    for path in sorted(glob.glob(os.path.join(out, "stats", "*.parquet"))):
        rows = pq.read_table(path, columns=["key", "source", "sha256", "caption", "nouns", "grounded_nouns", "clip_score"]).to_pylist()
        shards[os.path.basename(path)[: -len(".parquet")]] = rows
    rejects = sorted(
        (r["key"] or "", r["source"], r["shard"], r["stage"], r["reason"])
        for path in glob.glob(os.path.join(out, "rejects", "*.parquet"))
        for r in pq.read_table(path).to_pylist()
    )
    return shards, rejects


def assert_committed_output_valid(out, orphans=False):
    """Every stats parquet is readable and matches its tar (size, sha256, keys in order) and its
    rejects parquet; no tar or rejects file lies under its final name without its stats parquet
    (the commit point), unless `orphans` (a run killed between the tar and the stats rename)."""
    committed = set()
    for stats_path in glob.glob(os.path.join(out, "stats", "*.parquet")):
        shard = os.path.basename(stats_path)[: -len(".parquet")]
        committed.add(shard)
        meta = pq.read_metadata(stats_path).metadata
        keys = pq.read_table(stats_path, columns=["key"]).column("key").to_pylist()
        tar_path = os.path.join(out, "shards", f"{shard}.tar")
        if int(meta[SHARD_META_BYTES]) == 0:  # every input rejected: no tar
            assert not keys and not os.path.exists(tar_path), shard
            continue
        with open(tar_path, "rb") as f:
            data = f.read()
        assert len(data) == int(meta[SHARD_META_BYTES]), shard
        assert hashlib.sha256(data).hexdigest() == meta[SHARD_META_SHA256].decode(), shard
        with tarfile.open(tar_path) as tar:
            names = [m.name for m in tar.getmembers()]
        assert list(dict.fromkeys(n.rpartition(".")[0] for n in names)) == keys, shard
        rejected = int(meta[SHARD_META_REJECTED])
        rejects_path = os.path.join(out, "rejects", f"{shard}.parquet")
        assert pq.read_metadata(rejects_path).num_rows == rejected, shard  # there even when empty
    for directory, suffix in (("shards", ".tar"), ("rejects", ".parquet")):
        for path in glob.glob(os.path.join(out, directory, f"*{suffix}")):
            if os.path.basename(path)[: -len(suffix)] not in committed:
                assert orphans, f"{path} is under its final name but its shard is not committed"
    return committed


def assert_same_as_reference(out, reference_out):
    """The same shards holding the same keys, images and captions in the same order, the same
    rejects; every input once; nothing left over (fragments, temp files, the lock)."""
    shards, rejects = contents(out)
    want_shards, want_rejects = contents(reference_out)
    assert rejects == want_rejects
    assert sorted(shards) == sorted(want_shards)
    for shard, rows in shards.items():
        want = want_shards[shard]
        assert [r["key"] for r in rows] == [r["key"] for r in want], shard
        for row, ref in zip(rows, want):
            assert row["clip_score"] == pytest.approx(ref["clip_score"], abs=1e-4), row["key"]
            row.pop("clip_score"), ref.pop("clip_score")
            assert row == ref
    keys = [r["key"] for rows in shards.values() for r in rows] + [r[0] for r in rejects]
    assert len(keys) == len(set(keys))
    assert_committed_output_valid(out)
    leftovers = [os.path.join(d, f) for d, _, files in os.walk(out) for f in files if f.endswith(TMP_SUFFIX)]
    assert leftovers == []
    assert os.listdir(os.path.join(out, "_work", "fragments")) == []
    assert not os.path.exists(os.path.join(out, LOCK_NAME))


def run_driver(root, out, models_cache, ray_session, spec, marker=None):
    """`pixcap run` over the collection at root in a subprocess on the session's Ray, with
    PIXCAP_KILL_AT=spec; returns the finished Popen and its stderr."""
    job_file = out.parent / f"{out.name}.yaml"
    job_file.write_text(yaml.safe_dump(job_for(root, out, models_cache).to_dict()))
    env = {**os.environ, failpoints.ENV: spec}
    if marker:
        env[failpoints.ONCE_ENV] = str(marker)
    address = ray_session.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [sys.executable, "-m", "pixcap.cli.main", "run", str(job_file), "--address", address],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    _, stderr = driver.communicate(timeout=300)
    return driver, stderr


# point -> PIXCAP_KILL_AT. "driver": the point is reached in a Ray worker, which SIGKILLs the driver.
KILL_POINTS = {
    "read": "read:1:driver",  # a read task's first batch: nothing decoded yet
    "caption": "caption:1:driver",  # the caption actor's first batch
    "fragment": "fragment:2",  # the driver, as finished rows come back: fragments, nothing committed
    "commit": "shard_commit:1:both",  # a commit task, between a shard's tar and its stats: both die
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkilled_driver_resumes_to_the_same_output(point, reference, tmp_path, models_cache, ray_session):
    root, reference_out, manifest = reference
    out = root / f"killed-{point}"
    shutil.rmtree(out, ignore_errors=True)
    marker = tmp_path / "fired"
    driver, stderr = run_driver(root, out, models_cache, ray_session, KILL_POINTS[point], marker)
    assert driver.returncode == -signal.SIGKILL, stderr[-2000:]
    assert marker.exists()  # the kill came from the failpoint
    assert os.path.exists(out / LOCK_NAME)  # the killed run's lock is left behind
    committed = assert_committed_output_valid(out, orphans=point == "commit")
    assert len(committed) < len(manifest["shards"])
    if point == "fragment":
        assert glob.glob(str(out / "_work" / "fragments" / "*.parquet"))
    if point == "commit":  # the shard whose stats rename never happened
        assert {os.path.basename(p)[: -len(".tar")] for p in glob.glob(str(out / "shards" / "*.tar"))} - committed

    messages = io.StringIO()
    resumed = run_job(job_for(root, out, models_cache), stream=messages)
    assert f"took over the stale lock of a run that is gone (pid {driver.pid} " in messages.getvalue()
    if point == "commit":
        assert "half-written files of an earlier run" in messages.getvalue()
    assert resumed["totals"] == manifest["totals"]
    assert_same_as_reference(out, reference_out)
    shutil.rmtree(out)
