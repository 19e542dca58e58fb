"""Commit: a shard whose inputs are all in fragments becomes tar + rejects + stats, in input order;
the images, and the members made beside them (control maps), come from the shard's blobs
(output/blobs.py), which go once the stats are written.

Each file is written to a temporary name and renamed; the stats parquet is renamed last and is
the commit point, so a reader that follows the stats never sees a half-written shard. The
`Committer` runs commits on a small thread pool while the Ray graph goes on.
"""
from __future__ import annotations

import contextlib
import io
import json
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixcap.schemas import batch as B
from pixcap.schemas import rejects as R
from pixcap.schemas.manifest import (
    SHARD_META_BYTES, SHARD_META_EMBEDDINGS_SHA256, SHARD_META_REJECTED,
    SHARD_META_REJECTS_SHA256, SHARD_META_SHA256,
)
from pixcap.schemas.fragments import record_of
from pixcap.schemas.records import CAPTION_EXT, IMAGE_EXT, MEMBER_META, RECORD_EXT, SAMPLE_SCHEMA

from . import failpoints
from .layout import blob as blob_path
from .layout import shard_blobs
from .layout import shard_files
from .ledger import Ledger
from .parquet import parquet_bytes
from .lock import LockLost
from .storage import Storage

COMMIT_THREADS = 2
BLOB_READS = 32
# A run that fails (a commit, a stage) lets the commits already under way finish for this long:
# they are independent of the failure, and a commit cut between its tar and its stats leaves an
# uncommitted tar on a disk that may be full. An interrupt (SIGINT, SIGTERM) does not wait, nor
# does a run that lost its output's lock.
DRAIN_SECONDS = 30


class CommitError(RuntimeError):
    """A shard could not be committed (a full disk, a write error): the run stops."""


def _shard_rows(storage: Storage, shard: str, fragments: list) -> tuple:
    """(the shard's rows from its fragments, one per index (a retried task may write one twice), the
    record schema the fragments hold: the job's, the same in every fragment of an output)."""
    by_index, schema = {}, SAMPLE_SCHEMA
    for fragment in sorted(fragments):
        with storage.open(fragment) as f:
            table = pq.read_table(io.BytesIO(f.read()), filters=[(B.SHARD, "=", shard)])
        schema = record_of(table.schema)
        for row in table.to_pylist():
            by_index.setdefault(row[B.INDEX], row)
    return [by_index[i] for i in sorted(by_index)], schema


def _record(row: dict, schema: pa.Schema = SAMPLE_SCHEMA) -> dict:
    return {name: row[name] for name in schema.names}


def _record_json(row: dict, schema: pa.Schema) -> bytes:
    """KEY.json: the record without the values not computed (the aesthetic score of a job without
    that stage). A JSON null has no type: HF datasets would type such a column `null` and fail on
    the first shard that has a number; a key left out is read as missing. The stats keep the type."""
    record = {name: value for name, value in _record(row, schema).items() if value is not None}
    return json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _text_members(schema: pa.Schema) -> dict:
    """{member suffix: column} of the text members besides KEY.txt: each named captioner's KEY.NAME.txt."""
    return {field.metadata[MEMBER_META].decode(): field.name for field in schema
            if field.metadata and MEMBER_META in field.metadata}


def _blob_members(row: dict, shard: str) -> dict:
    """{member suffix: blob path} of the members a row has beside its image (KEY.canny.png); a fragment
    written before there were such members has none."""
    return {member: blob_path(shard, row[B.INDEX], member) for member in row.get(B.BLOB_MEMBERS) or ()}


def _with_images(storage: Storage, samples: list, shard: str):
    """(row, stored bytes, {member: bytes} of its other blobs) in order, the blobs fetched BLOB_READS
    samples at a time: a shard's images are never all in memory, and an object store serves each
    group concurrently. A blob that is missing fails the commit: a sample is written whole or not at all."""
    for start in range(0, len(samples), BLOB_READS):
        group = samples[start:start + BLOB_READS]
        members = [_blob_members(row, shard) for row in group]
        blobs = storage.read_many([row[B.STORED_AT] for row in group] + [p for m in members for p in m.values()])
        yield from ((row, blobs[row[B.STORED_AT]], {member: blobs[path] for member, path in made.items()})
                    for row, made in zip(group, members))


def _write_tar(f, storage: Storage, samples: list, failpoint, schema: pa.Schema = SAMPLE_SCHEMA, shard: str = "") -> None:
    # Imported here, in the commit task: webdataset imports torch, 1-2 s that the driver, which
    # imports this module for the Committer, would spend on every `pixcap run`.
    import webdataset as wds

    # Fixed owner and mtime: the same samples give byte-identical shards on every run.
    writer = wds.TarWriter(f, user="pixcap", group="pixcap", mtime=0.0)
    members = _text_members(schema)
    try:
        partway = False
        for row, image, blobs in _with_images(storage, samples, shard):
            writer.write(
                {
                    "__key__": row[B.KEY],
                    IMAGE_EXT: image,
                    CAPTION_EXT: row[B.CAPTION].encode("utf-8"),
                    **{member: (row[column] or "").encode("utf-8") for member, column in members.items()},
                    **blobs,  # KEY.canny.png
                    RECORD_EXT: _record_json(row, schema),
                }
            )
            if not partway and f.tell() > 0:  # the tar's first 10 KB block reached the file
                partway = True
                f.flush()
                failpoint("shard_tar")
        writer.close()
    except BaseException:
        # A failed write (a full disk): end the tar stream now, while the file is open, or
        # its finalizer writes to the closed file and prints a traceback later.
        with contextlib.suppress(Exception):
            writer.close()
        raise


def _no_failpoint(point: str) -> None:
    pass


def _reject_row(row: dict, shard: str) -> dict:
    return {R.SOURCE: row[B.SOURCE], R.KEY: row[B.KEY] or None, R.SHARD: shard, R.STAGE: row[B.REJECT_STAGE],
            R.REASON: row[B.REJECT_REASON], R.ERROR: row[B.REJECT_ERROR]}


def _write_parquet(storage: Storage, path: str, table: pa.Table) -> dict:
    with storage.writer(path) as f:
        f.write(parquet_bytes(table))  # no rows: no row group, which every reader takes
    return {"bytes": f.bytes, "sha256": f.digest.hexdigest()}


def _write_embeddings(storage: Storage, path: str, samples: list) -> dict:
    vectors = np.stack([np.frombuffer(r[B.CLIP_EMBEDDING], dtype=np.float16) for r in samples])
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    with storage.writer(path) as f:
        f.write(buffer.getvalue())
    return {"bytes": f.bytes, "sha256": f.digest.hexdigest()}


def commit_shard(storage: Storage, shard: str, fragments: list, failpoint=_no_failpoint) -> dict:
    """Write shards/SHARD.tar and embeddings/SHARD.npy (when it has samples), rejects/SHARD.parquet
    (always, maybe empty) and stats/SHARD.parquet, last: the commit point. Each file appears whole
    under its name.

    `failpoint(point)` is called part-way through the tar, once its first block is in the file
    ("shard_tar", not reached by a tar under 10 KB), and between the tar and the stats
    ("shard_commit"). Returns the shard's counts and {path: {bytes, sha256}} of its files."""
    rows, schema = _shard_rows(storage, shard, fragments)
    samples = [r for r in rows if not r[B.REJECT_REASON]]
    rejects = [r for r in rows if r[B.REJECT_REASON]]
    paths = shard_files(shard)
    files = {}
    if samples:
        with storage.writer(paths["tar"]) as f:
            _write_tar(f, storage, samples, failpoint, schema, shard)
        files[paths["tar"]] = {"bytes": f.bytes, "sha256": f.digest.hexdigest()}
        if all(r[B.CLIP_EMBEDDING] for r in samples):
            files[paths["embeddings"]] = _write_embeddings(storage, paths["embeddings"], samples)
    reject_table = pa.Table.from_pylist([_reject_row(r, shard) for r in rejects], schema=R.REJECT_SCHEMA)
    files[paths["rejects"]] = _write_parquet(storage, paths["rejects"], reject_table)
    failpoint("shard_commit")
    tar = files.get(paths["tar"], {"bytes": 0, "sha256": ""})
    stats = pa.Table.from_pylist([_record(r, schema) for r in samples], schema=schema).replace_schema_metadata({
        SHARD_META_BYTES: str(tar["bytes"]), SHARD_META_SHA256: tar["sha256"], SHARD_META_REJECTED: str(len(rejects)),
        SHARD_META_REJECTS_SHA256: files[paths["rejects"]]["sha256"],
        SHARD_META_EMBEDDINGS_SHA256: files.get(paths["embeddings"], {}).get("sha256", ""),
    })
    files[paths["stats"]] = _write_parquet(storage, paths["stats"], stats)
    storage.remove_tree(shard_blobs(shard))  # committed: its images are in the tar now
    return {"name": shard, "samples": len(samples), "rejected": len(rejects), "files": files}


def _commit_failure(shard: str, e: Exception) -> str:
    cause = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror and e.filename else str(e)
    cause = cause.splitlines()[0] if cause else type(e).__name__
    return f"could not commit shard {shard}: {cause}; fix that and run again to continue"


def _commit_in_worker(storage: Storage, shard: str, fragments: list) -> dict:
    """A commit as a Ray task: on any node, near the fragments' storage, never in the driver."""
    return commit_shard(storage, shard, fragments, failpoints.reached)


class Committer:
    """Commits complete shards as Ray tasks (on a thread pool when no Ray runs: a rerun that only
    has commits left); the ledger is only touched from the driver, which gets small results back.

    A failed commit stops the run at the next collect, and what the shard had written is removed
    by the next run, which commits it again. Use as a context manager: leaving it on an error
    first lets the commits under way finish (up to DRAIN_SECONDS), then cancels what is left, so
    none outlives the output lock; leaving it on an interrupt cancels them at once."""

    def __init__(self, storage: Storage, ledger: Ledger, cpus: float = 1.0):
        self.storage, self.ledger, self.cpus = storage, ledger, cpus
        self.files = {}  # path -> {bytes, sha256} of every file this run committed
        self.pool = None
        self.remote = None  # the commit as a Ray remote function, once Ray runs
        self.running = {}  # future or ObjectRef -> shard
        self.written = self.rejected = 0

    def __enter__(self) -> "Committer":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        # An error, not an interrupt, in a run that still holds the output (after LockLost it may
        # be another run's by now): the commits under way may finish.
        may_finish = exc_type is None or (issubclass(exc_type, Exception) and not issubclass(exc_type, LockLost))
        if self.running and may_finish:
            self._drain(DRAIN_SECONDS)
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.remote is not None and self.running:
            import ray

            for ref in self.running:
                ray.cancel(ref, force=True)
            ray.wait(list(self.running), num_returns=len(self.running), timeout=30)

    def _submit(self, shard: str, fragments: list):
        import ray

        if ray.is_initialized():
            if self.remote is None:
                self.remote = ray.remote(_commit_in_worker).options(
                    num_cpus=self.cpus, max_retries=3, **failpoints.worker_env())
            return self.remote.remote(self.storage, shard, fragments)
        if self.pool is None:
            self.pool = ThreadPoolExecutor(COMMIT_THREADS)
        return self.pool.submit(commit_shard, self.storage, shard, fragments, failpoints.reached)

    def submit_complete(self) -> None:
        busy = set(self.running.values())
        for shard in self.ledger.complete_shards():
            if shard not in busy:
                self.running[self._submit(shard, sorted(self.ledger.shards[shard].fragments))] = shard

    def _ready(self, timeout, every: bool) -> list:
        """The commits under way that finish within `timeout` (None: no limit): every one, or
        the first to finish (with any others already finished)."""
        pending = list(self.running)
        if isinstance(pending[0], Future):
            return list(wait(pending, timeout=timeout, return_when=ALL_COMPLETED if every else FIRST_COMPLETED)[0])
        import ray

        return ray.wait(pending, num_returns=len(pending) if every else 1, timeout=timeout)[0]

    @staticmethod
    def _result(handle) -> dict:
        if isinstance(handle, Future):
            return handle.result()
        import ray

        try:
            return ray.get(handle)
        except ray.exceptions.RayTaskError as e:  # the task's own exception is the cause to report
            raise (e.cause if isinstance(getattr(e, "cause", None), Exception) else e) from None

    def collect(self, block: bool = False) -> None:
        if not self.running:
            return
        for handle in self._ready(None, every=False) if block else self._ready(0, every=True):
            shard = self.running.pop(handle)
            try:
                result = self._result(handle)
            except Exception as e:
                raise CommitError(_commit_failure(shard, e)) from e
            self._record(shard, result)

    def _drain(self, seconds: float) -> None:
        """Wait up to `seconds` for the commits under way, keeping those that finish; a second
        failure is not reported (the first one is the run's error)."""
        for handle in self._ready(seconds, every=True):
            shard = self.running.pop(handle)
            try:
                self._record(shard, self._result(handle))
            except Exception:
                pass  # it removed its own temp files; the next run commits the shard again

    def _record(self, shard: str, result: dict) -> None:
        self.files.update(result["files"])
        self.written += result["samples"]
        self.rejected += result["rejected"]
        self.ledger.committed_shard(shard)

    def settle(self) -> None:
        """Wait for the commits under way."""
        while self.running:
            self.collect(block=True)
