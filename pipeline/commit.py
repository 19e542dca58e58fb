"""Commit: a shard whose inputs are all in fragments becomes tar + rejects + stats, in input order.

Each file is written to a temporary name and renamed; the stats parquet is renamed last and is
the commit point, so a reader that follows the stats never sees a half-written shard. The
`Committer` runs commits on a small thread pool while the Ray graph goes on.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

from pixcap.schemas import batch as B
from pixcap.schemas.manifest import (
    REJECTS_DIR, SHARD_META_BYTES, SHARD_META_REJECTED, SHARD_META_SHA256, SHARDS_DIR, STATS_DIR, TMP_SUFFIX,
)
from pixcap.schemas.records import CAPTION_EXT, IMAGE_EXT, RECORD_EXT, SAMPLE_SCHEMA
from pixcap.schemas import rejects as R

from . import failpoints
from .ledger import Ledger

COMMIT_THREADS = 2


class CommitError(RuntimeError):
    """A shard could not be committed (a full disk, a write error): the run stops."""


def _shard_rows(shard: str, fragments: list) -> list:
    """The shard's rows from its fragments, one per index (a retried task may write one twice)."""
    by_index = {}
    for fragment in sorted(fragments):
        table = pq.read_table(fragment, filters=[(B.SHARD, "=", shard)])
        for row in table.to_pylist():
            by_index.setdefault(row[B.INDEX], row)
    return [by_index[i] for i in sorted(by_index)]


def _record(row: dict) -> dict:
    return {name: row[name] for name in SAMPLE_SCHEMA.names}


def _write_tar(path: str, samples: list, failpoint) -> None:
    with open(path, "wb") as f:
        # Fixed owner and mtime: the same samples give byte-identical shards on every run.
        writer = wds.TarWriter(f, user="pixcap", group="pixcap", mtime=0.0)
        try:
            partway = False
            for row in samples:
                writer.write(
                    {
                        "__key__": row[B.KEY],
                        IMAGE_EXT: row[B.STORED],
                        CAPTION_EXT: row[B.CAPTION].encode("utf-8"),
                        RECORD_EXT: json.dumps(_record(row), ensure_ascii=False, sort_keys=True).encode("utf-8"),
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


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _no_failpoint(point: str) -> None:
    pass


def _reject_row(row: dict, shard: str) -> dict:
    return {R.SOURCE: row[B.SOURCE], R.KEY: row[B.KEY] or None, R.SHARD: shard, R.STAGE: row[B.REJECT_STAGE],
            R.REASON: row[B.REJECT_REASON], R.ERROR: row[B.REJECT_ERROR]}


def commit_shard(out_dir: str, shard: str, fragments: list, failpoint=_no_failpoint) -> dict:
    """Write shards/SHARD.tar, rejects/SHARD.parquet and stats/SHARD.parquet (the commit point).

    `failpoint(point)` is called part-way through the tar, once its first block is in the file
    ("shard_tar", not reached by a tar under 10 KB), and between the tar's rename and the stats'
    ("shard_commit")."""
    rows = _shard_rows(shard, fragments)
    samples = [r for r in rows if not r[B.REJECT_REASON]]
    rejects = [r for r in rows if r[B.REJECT_REASON]]
    tar_path = os.path.join(out_dir, SHARDS_DIR, f"{shard}.tar")
    stats_path = os.path.join(out_dir, STATS_DIR, f"{shard}.parquet")
    rejects_path = os.path.join(out_dir, REJECTS_DIR, f"{shard}.parquet")
    for directory in (SHARDS_DIR, STATS_DIR, REJECTS_DIR):
        os.makedirs(os.path.join(out_dir, directory), exist_ok=True)

    _write_tar(tar_path + TMP_SUFFIX, samples, failpoint)
    tar_bytes, tar_sha = os.path.getsize(tar_path + TMP_SUFFIX), _sha256_file(tar_path + TMP_SUFFIX)
    stats = pa.Table.from_pylist([_record(r) for r in samples], schema=SAMPLE_SCHEMA).replace_schema_metadata(
        {SHARD_META_BYTES: str(tar_bytes), SHARD_META_SHA256: tar_sha, SHARD_META_REJECTED: str(len(rejects))}
    )
    pq.write_table(stats, stats_path + TMP_SUFFIX)
    if rejects:
        table = pa.Table.from_pylist([_reject_row(r, shard) for r in rejects], schema=R.REJECT_SCHEMA)
        pq.write_table(table, rejects_path + TMP_SUFFIX)
        os.replace(rejects_path + TMP_SUFFIX, rejects_path)
    os.replace(tar_path + TMP_SUFFIX, tar_path)
    failpoint("shard_commit")
    os.replace(stats_path + TMP_SUFFIX, stats_path)
    return {"name": shard, "samples": len(samples), "rejected": len(rejects), "bytes": tar_bytes, "sha256": tar_sha}


def _commit_failure(shard: str, e: Exception) -> str:
    cause = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror and e.filename else str(e)
    cause = cause.splitlines()[0] if cause else type(e).__name__
    return f"could not commit shard {shard}: {cause}; fix that and run again to continue"


class Committer:
    """Commits complete shards on a thread pool; the ledger is only touched from the caller.

    A failed commit stops the run at the next collect, and the shard's temp files are left to the
    next run, which removes them and commits it again. Use as a context manager: leaving it shuts
    the pool down, with queued commits cancelled, so no commit outlives the output lock."""

    def __init__(self, out_dir: str, ledger: Ledger):
        self.out, self.ledger = out_dir, ledger
        self.pool = ThreadPoolExecutor(COMMIT_THREADS)
        self.running = {}  # future -> shard
        self.written = self.rejected = 0

    def __enter__(self) -> "Committer":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def submit_complete(self) -> None:
        busy = set(self.running.values())
        for shard in self.ledger.complete_shards():
            if shard not in busy:
                fragments = sorted(self.ledger.shards[shard].fragments)
                self.running[self.pool.submit(commit_shard, self.out, shard, fragments, failpoints.reached)] = shard

    def collect(self, block: bool = False) -> None:
        if not self.running:
            return
        done, _ = wait(list(self.running), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            shard = self.running.pop(future)
            try:
                result = future.result()
            except Exception as e:
                raise CommitError(_commit_failure(shard, e)) from e
            self.written += result["samples"]
            self.rejected += result["rejected"]
            self.ledger.committed_shard(shard)

    def settle(self) -> None:
        """Wait for the commits under way."""
        while self.running:
            self.collect(block=True)
