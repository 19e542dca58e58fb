"""Faults: Ray workers killed mid-job, and a full disk while a shard is committed or a fragment
written. Driver kills are in test_resume.py; the failpoints themselves and the lock are in
tests/output/ (test_failpoints.py, test_lock.py)."""
import errno
import glob
import io
import os
import re
import shutil
import time
from types import SimpleNamespace

import pytest

from pixcap.output import failpoints
from pixcap.cli.main import main
from pixcap.output.lock import LOCK_NAME
from pixcap.pipeline.run import StageError, run_job
from pixcap.schemas import batch as B
from pixcap.schemas.manifest import TMP_SUFFIX
from pixcap.output.fragments import FragmentWriter
from pixcap.output.ledger import Ledger
from pixcap.output.storage import Storage

from .tarfiles import jpeg_bytes
from .test_end_to_end import job_for
from .test_resume import assert_committed_output_valid, assert_same_as_reference, reference, run_driver  # noqa: F401
from tests.output.batches import finished_batch
from tests.tiny_jobs import with_tiny_models_yaml

NO_SPACE = os.strerror(errno.ENOSPC)


# -- a failed commit, without Ray -------------------------------------------------------------

class QuietProgress:
    """Progress without Ray's counter actor: the counts are kept, nothing is printed."""

    def __init__(self, *args, **kwargs):
        self.committed = SimpleNamespace(parts=0, written=0, rejected=0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.fixture
def fake_graph(monkeypatch, tmp_path):
    """`pixcap run` with the Ray graph and the models replaced: the graph yields, slowly, one
    batch of finished rows per two-input shard; `consumed` counts the batches the driver took."""
    from pixcap.pipeline import graph, progress
    from pixcap.pipeline import run as run_module

    class Graph:
        batches, consumed, work = 80, 0, None

        def __call__(self, todo, job, storage, counter):
            self.storage = storage
            return self

        def iter_batches(self, batch_size=None):
            writer = FragmentWriter(self.storage)
            image = jpeg_bytes(1, size=(160, 120))  # a tar over one 10 KB block: shard_tar is reached
            for i in range(self.batches):
                self.consumed += 1
                batch = finished_batch(f"p-{i:05d}", [0, 1], count=2, part_end=i == self.batches - 1)
                yield writer({**batch, B.STORED: [image, image]})
                time.sleep(0.1)

    fake = Graph()
    monkeypatch.setattr(graph, "build_dataset", fake)
    monkeypatch.setattr(run_module, "start_ray", lambda address, job, **kwargs: job)
    monkeypatch.setattr(run_module, "resolve_models", lambda job: job)
    monkeypatch.setattr(progress, "ProgressCounter", SimpleNamespace(remote=lambda: None))
    monkeypatch.setattr(progress, "Progress", QuietProgress)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(jpeg_bytes(1))
    fake.out = tmp_path / "out"
    fake.job_file = str(tmp_path / "job.yaml")
    (tmp_path / "job.yaml").write_text(with_tiny_models_yaml(f"inputs: ['{tmp_path}/images']\noutput: {fake.out}\n"))
    return fake


def test_a_failed_commit_stops_the_run_at_once_with_one_line(fake_graph, failpoint_env, capsys):
    failpoint_env(failpoints.ENV, "shard_tar:1:enospc")  # the first shard's tar, after its first sample
    fake_graph.batches = 300  # 0.1 s each: more than a commit task takes to start on a loaded machine
    code = main(["run", fake_graph.job_file])
    _, err = capsys.readouterr()
    assert code == 1
    failed = [line for line in err.splitlines() if line.startswith("pixcap: failed:")]
    assert len(failed) == 1, err
    # Commits run as Ray tasks when a Ray runs: the first to reach its tar may be any early shard.
    shard = re.match(r"pixcap: failed: CommitError: could not commit shard (p-\d{5}): ", failed[0]).group(1)
    assert failed[0].endswith(f"[Errno {errno.ENOSPC}] {NO_SPACE} (injected at shard_tar); fix that and run again to continue")
    assert "Traceback" not in err
    assert fake_graph.consumed < 250  # of 300: the driver stopped once the failed commit came back, not at the end
    out = fake_graph.out
    assert not (out / LOCK_NAME).exists()
    # Commits run concurrently; one cancelled between its tar and its stats leaves an orphan tar.
    assert shard not in assert_committed_output_valid(out, orphans=True)
    # The failed tar removed its temp file; commits cancelled when the run stopped may leave theirs,
    # under pixcap's temp names only, which the next run removes.
    assert not glob.glob(str(out / "shards" / f"{shard}.tar*"))
    Ledger(Storage(str(out)), {"p"}).clean_uncommitted()
    assert not glob.glob(str(out / "*" / f"*{TMP_SUFFIX}"))
    assert_committed_output_valid(out)  # no orphan left either


# -- Ray workers killed, and a full disk, through the real graph -------------------------------

@pytest.mark.slow
def test_a_killed_actor_and_a_killed_task_worker_are_replaced_and_the_job_finishes(reference, tmp_path, failpoint_env,
                                                                                 models_cache):
    """In one run, SIGKILL the worker holding the caption actor (its second batch) and the one running the
    first decode task: Ray restarts the actor and retries the task; the output is the reference's."""
    root, reference_out, manifest = reference
    marker = tmp_path / "fired"
    failpoint_env(failpoints.ENV, "caption:2,decode:1")
    failpoint_env(failpoints.ONCE_ENV, str(marker))  # else the restarted worker dies again
    out = root / "workers-killed"
    shutil.rmtree(out, ignore_errors=True)
    finished = run_job(job_for(root, out, models_cache), stream=io.StringIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fired.caption", "fired.decode"]  # both kills happened
    assert finished["totals"] == manifest["totals"]
    assert_same_as_reference(out, reference_out)
    shutil.rmtree(out)


@pytest.mark.slow
def test_disk_full_while_committing_stops_cleanly_and_the_rerun_completes(reference, models_cache, ray_session):
    root, reference_out, manifest = reference
    out = root / "disk-full"
    shutil.rmtree(out, ignore_errors=True)
    driver, stderr = run_driver(root, out, models_cache, ray_session, "shard_tar:1:enospc")
    assert driver.returncode == 1, stderr[-3000:]
    failed = [line for line in stderr.splitlines() if line.startswith("pixcap: failed:")]
    assert len(failed) == 1 and "Traceback" not in stderr, stderr[-3000:]
    shard = failed[0].split("could not commit shard ")[1].split(":")[0]
    assert failed[0].startswith(f"pixcap: failed: CommitError: could not commit shard {shard}: [Errno {errno.ENOSPC}] {NO_SPACE}")
    assert not (out / LOCK_NAME).exists()
    # The commits under way were let finish (tests/output/test_commit.py tests that on its own); one still
    # running after commit.DRAIN_SECONDS on a loaded machine is cancelled and may leave a tar
    # without its stats: not committed, and removed by the rerun (checked below).
    committed = assert_committed_output_valid(out, orphans=True)
    assert shard not in committed and len(committed) < len(manifest["shards"])

    resumed = run_job(job_for(root, out, models_cache), stream=io.StringIO())
    assert resumed["totals"] == manifest["totals"]
    assert_same_as_reference(out, reference_out)
    shutil.rmtree(out)


@pytest.mark.slow
def test_disk_full_while_writing_fragments_stops_with_one_line(reference, tmp_path, failpoint_env, models_cache):
    """A write task (a fragment, inside Ray) that fails is not retried: the run stops with one
    line naming the stage and the cause, not Ray's multi-line task error; the lock is released."""
    root, _, _ = reference
    failpoint_env(failpoints.ENV, "write:1:enospc")
    out = tmp_path / "out"
    with pytest.raises(StageError) as failed:
        run_job(job_for(root, out, models_cache), stream=io.StringIO())
    assert str(failed.value) == (f"stage MapBatches(_write) failed: OSError: [Errno {errno.ENOSPC}] {NO_SPACE}"
                                 " (injected at write); fix that and run again to continue")
    assert not (out / LOCK_NAME).exists()
    assert_committed_output_valid(out)
