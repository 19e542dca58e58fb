"""Shared fixtures, and the markers that `make test-unit` and `make test-fast` select by.

Session fixtures: each is built once per pytest run, however many tests use it. A new test that
needs Ray, the pipeline's output or S3 should take these rather than build its own: every output
built again is minutes of `make test`.

- models_cache: a folder with the tiny offline models built (jobs name them tiny:llava, tiny:clip...).
- ray_session: the one local Ray of the session (2 CPUs, every process on 127.0.0.1). A test that
  runs the pipeline in this process (run_job, build_dataset) requests it, and pixcap joins it; a
  `pixcap run` subprocess joins it with `--address ray_session.get_runtime_context().gcs_address`.
- pipeline_run: the pipeline run once, on the session's Ray with the tiny models, over the
  collection of tests/pipeline/collection.py (two SA-1B tars and a folder, three broken inputs):
  a PipelineRun(root, out, manifest, expected). It is shared: treat `out` as read-only (copy it
  to change it) and write other outputs under tmp_path, or under `root` named for your test.
  tests/analysis (pipeline_output), tests/pipeline/test_end_to_end.py (finished_run) and the
  crash tests (reference) all read this one output.
- s3_server, bucket: moto's S3 server on 127.0.0.1 (AWS variables set at import, before Ray
  starts), and a fresh bucket per test. tests/pipeline/conftest.py adds s3_collection and
  s3_run: the same collection uploaded to S3 and run once from S3 to S3.
- ray_subprocess: env(**extra), the environment for a subprocess that starts a Ray of its own
  (`pixcap run` without --address, `ray start`). Request it in any test or fixture that starts
  one: it is how such a test is marked `ray` (see below).
- synthetic_stats: stats(rows, files, seed) -> (output folder, expected Table 1): made-up stats
  parquets (tests/pipeline/synthetic_stats.py), written once per session for each (rows, files,
  seed), for the memory tests of `pixcap stats` and `pixcap report`. Read-only, but for files of
  a test's own beside OUT/stats.
- failpoint_env: sets PIXCAP_KILL_AT (output/failpoints.py) in this process for one test.

Markers, set below from the fixtures a test uses (directly or through other fixtures), never by
hand, so that a new test is sorted by what it needs:
- ray: needs Ray (ray_session, or ray_subprocess: a Ray of its own in a subprocess);
- s3: needs the S3 server (s3_server, bucket).
`slow` is set by hand on the long end-to-end, fault and memory tests.

    make test-unit   pytest -m "not ray and not s3 and not slow"   no Ray, no S3 server
    make test-fast   pytest -m "not slow"                           adds the quick tests on Ray and S3
    make test        pytest                                         everything
"""
import os
from typing import NamedTuple

import pytest

# The S3 server's fixtures; importing the module sets the AWS variables before Ray starts.
from .object_store import bucket, s3_server  # noqa: F401

# fixture -> the marker a test using it (directly or through another fixture) gets
MARKED_BY = {
    "ray_session": "ray",
    "ray_subprocess": "ray",
    "s3_server": "s3",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "ray: needs Ray, the session's or one a subprocess starts (set from fixtures)")
    config.addinivalue_line("markers", "s3: needs the S3 server on loopback (set from fixtures)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        # fixturenames is the closure: the fixtures a test requests and those they request
        for marker in sorted({MARKED_BY[name] for name in item.fixturenames if name in MARKED_BY}):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def ray_session():
    """Ray is started once per test session; starting it costs seconds on two cores. Like the
    Ray pixcap starts itself, it listens on 127.0.0.1 only."""
    import ray

    from pixcap.pipeline.engine import loopback_options

    # "local": a Ray of the session's own, even where `ray start` left one running on this machine.
    ray.init(address="local", num_cpus=2, log_to_driver=False, configure_logging=False, **loopback_options())
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_subprocess():
    """env(**extra): the environment for a subprocess that starts a Ray of its own: this process's
    as it is at the call, without RAY_ADDRESS (with it the subprocess would join a Ray that `ray
    start` left on the machine), with TOKENIZERS_PARALLELISM=false and extra. A test or fixture
    that starts such a subprocess requests this fixture, even where it builds the environment
    itself: that marks the test `ray`."""
    def env(**extra) -> dict:
        found = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        return {**found, "TOKENIZERS_PARALLELISM": "false", **extra}

    return env


@pytest.fixture(scope="session")
def models_cache(tmp_path_factory):
    """A models cache with the tiny models built once; jobs name them as tiny:llava, tiny:clip."""
    from pixcap.models.tiny import build_tiny_models

    root = tmp_path_factory.mktemp("models")
    build_tiny_models(str(root))
    return str(root)


class PipelineRun(NamedTuple):
    root: object  # the collection's folder (pathlib.Path): ROOT/tars/sa_*.tar and ROOT/photos
    out: object  # the output (pathlib.Path), ROOT/out: read-only
    manifest: dict  # what run_job returned
    expected: dict  # {"inputs": 15, "broken": 3}, from write_collection


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, ray_session, models_cache) -> PipelineRun:
    """The pipeline run once per session over tests/pipeline/collection.py's collection, with the
    job of tests/pipeline/test_end_to_end.py's job_for (shard_size 3, the tiny models)."""
    from pixcap.pipeline.run import run_job

    from tests.pipeline.collection import write_collection
    from tests.pipeline.test_end_to_end import job_for

    root = tmp_path_factory.mktemp("pipeline-run")
    expected = write_collection(root)
    out = root / "out"
    manifest = run_job(job_for(root, out, models_cache))
    return PipelineRun(root, out, manifest, expected)


@pytest.fixture(scope="session")
def subset_parent(tmp_path_factory, ray_session, models_cache) -> str:
    """An output of 12 samples and 1 reject in 5 shards of 320x256 images (big enough for the 256 px
    trainer), with an exact and a near copy across its tars (tests/subsets/subset_collection.py).
    Read-only: `pixcap select` and `pixcap ablate` cut subsets of it into folders of their own."""
    import io

    from pixcap.pipeline.run import run_job
    from pixcap.schemas import load_job

    from tests.subsets.subset_collection import write_subset_collection
    from tests.tiny_jobs import with_tiny_models

    root = tmp_path_factory.mktemp("subset-collection")
    write_subset_collection(root)
    job = load_job(with_tiny_models({
        "inputs": [str(root / "tars" / "sa_*.tar")], "output": str(root / "out"), "shard_size": 3,
        "models_cache": models_cache, "caption": {"max_new_tokens": 8, "batch_size": 4},
        "ray": {"cpus_per_task": 0.25, "cpus_per_actor": 0.25},
    }))
    run_job(job, stream=io.StringIO())
    return str(root / "out")


@pytest.fixture(scope="session")
def synthetic_stats(tmp_path_factory):
    """stats(rows, files, seed=0) -> (folder, expected table), made once per session for each
    (rows, files, seed): a million rows take seconds to write, and two tests measure the same."""
    from tests.pipeline.synthetic_stats import write_stats

    made = {}

    def stats(rows: int, files: int, seed: int = 0):
        if (rows, files, seed) not in made:
            out = tmp_path_factory.mktemp(f"stats-{rows}-{files}-{seed}")
            made[rows, files, seed] = out, write_stats(out, rows=rows, files=files, seed=seed)
        return made[rows, files, seed]

    return stats


@pytest.fixture
def failpoint_env(monkeypatch):
    """failpoint_env(name, value): set PIXCAP_KILL_AT (and its companions) in this process for one
    test, with fresh arrival counts."""
    from pixcap.output import failpoints

    monkeypatch.setattr(failpoints, "_counts", {})
    monkeypatch.delenv(failpoints.ONCE_ENV, raising=False)
    return lambda name, value: monkeypatch.setenv(name, value)


@pytest.fixture(autouse=True, scope="session")
def _console():
    """pixcap's messages (the `pixcap` logger) on stdout and stderr as the command shows them, for the
    tests that call the library and read its lines with capsys."""
    from pixcap.cli.console import configure_console

    configure_console()


@pytest.fixture(autouse=True, scope="session")
def _quiet_tokenizers():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield

