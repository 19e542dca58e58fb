"""A resampled stream over ONE shard whose samples the filters all refuse: it must stop with the one line that
says nothing passed and what was skipped, as a stream over several shards does, instead of skipping forever."""
import contextlib
import signal

import pytest

from pixcap.schemas import JobError, load_train_job
from pixcap.trainer.coverage import ShareCoverage
from pixcap.trainer.data import step_batches

from .shards_fixture import write_shards

LIMIT_SECONDS = 60  # a hang fails the test here: the stream otherwise never ends


@contextlib.contextmanager
def no_hang(seconds: int):
    def stop(signum, frame):
        raise TimeoutError(f"the stream did not stop within {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def one_shard(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("one-shard"), n_shards=1, per_shard=5)


@pytest.mark.parametrize("workers", [0, 1])
def test_one_shard_that_nothing_passes_stops_and_counts_what_it_skipped(one_shard, workers):
    job = load_train_job({"shards": one_shard, "batch_size": 2, "num_workers": workers, "shuffle_buffer": 4,
                          "filters": {"min_clip_score": 10.0}})
    with no_hang(LIMIT_SECONDS), pytest.raises(JobError) as stopped:
        next(step_batches(job, one_shard, 0))
    message = str(stopped.value)
    del stopped  # its traceback holds the data loader, and so its worker
    assert message.startswith("no sample of the 1 shard(s) this rank reads passes the filters and fits the buckets "
                              "(skipped: {'filter:min_clip_score': ")
    skipped = int(message.split("'filter:min_clip_score': ")[1].split("}")[0])
    assert skipped >= 5  # every sample of the shard, each counted


def sample(url: str, key: str) -> dict:
    return {"__url__": url, "__key__": key}


def test_a_shard_drawn_again_at_once_counts_as_read_through():
    """Resampling may draw the shard it just read: its first key again marks the end of the read before."""
    coverage = ShareCoverage(1)
    stream = [sample("a", k) for k in "xyz"] * 2
    seen = []
    for _ in coverage(iter(stream)):
        seen.append(coverage.read_through)
    assert seen == [None, None, None, 3, 3, 3]
    coverage = ShareCoverage(2)  # two shards: both must end, whichever order they are drawn in
    stream = [sample("a", "x"), sample("a", "y"), sample("a", "x"), sample("a", "y"), sample("b", "u"), sample("a", "x")]
    seen = [coverage.read_through for _ in coverage(iter(stream))]
    assert seen == [None, None, None, None, None, 5]
