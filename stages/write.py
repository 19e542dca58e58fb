"""write: stage finished rows as fragments, then commit each complete shard as tar + parquet.

Rows reach the writer in any order and from many workers, so a batch is first written as one
fragment (a parquet file holding the stored image bytes too) under the work folder. When every
input of a shard is in some fragment, `commit_shard` writes the shard's tar, its stats parquet
and its rejects parquet in input order, each to a temporary name and renamed; the stats parquet
is renamed last and is the commit point.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

from pixcap.schemas import batch as B
from pixcap.schemas.manifest import REJECTS_DIR, SHARD_META_BYTES, SHARD_META_REJECTED, SHARD_META_SHA256, SHARDS_DIR, STATS_DIR
from pixcap.schemas.records import CAPTION_EXT, IMAGE_EXT, RECORD_EXT, SAMPLE_SCHEMA
from pixcap.schemas.rejects import REJECT_SCHEMA

FRAGMENTS = "fragments"
TMP_SUFFIX = ".tmp"
# Bookkeeping columns a fragment carries beside the sample columns.
FRAGMENT_SCHEMA = pa.schema(
    [
        pa.field(B.INDEX, pa.int32()),
        pa.field(B.SHARD_COUNT, pa.int32()),
        pa.field(B.PART_END, pa.bool_()),
        pa.field(B.PART_ID, pa.string()),
        pa.field(B.STORED, pa.binary()),
        pa.field(B.REJECT_STAGE, pa.string()),
        pa.field(B.REJECT_REASON, pa.string()),
        pa.field(B.REJECT_ERROR, pa.string()),
        *SAMPLE_SCHEMA,
    ]
)
LEDGER_COLUMNS = [B.SHARD, B.INDEX, B.SHARD_COUNT, B.PART_END, B.PART_ID]
KEPT_ON_REJECT = frozenset(LEDGER_COLUMNS + [B.KEY, B.SOURCE, B.REJECT_STAGE, B.REJECT_REASON, B.REJECT_ERROR])


def _column(batch: dict, field: pa.Field, n: int) -> list:
    """A fragment column from the batch; a rejected row may lack later stages' values."""
    if field.name not in batch:
        return [None] * n
    values = list(batch[field.name])
    if pa.types.is_list(field.type):
        return [None if v is None else [str(x) for x in v] for v in values]
    if pa.types.is_floating(field.type):
        return [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in values]
    if pa.types.is_integer(field.type):
        return [None if v is None else int(v) for v in values]
    if pa.types.is_boolean(field.type):
        return [None if v is None else bool(v) for v in values]
    if pa.types.is_binary(field.type):
        return [None if v is None else bytes(v) for v in values]
    return [None if v is None else str(v) for v in values]


class FragmentWriter:
    """Writes one batch of finished rows as a fragment; returns the ledger columns of its rows."""

    def __init__(self, work_dir: str):
        self.directory = os.path.join(work_dir, FRAGMENTS)

    def __call__(self, batch: dict) -> dict:
        n = len(batch[B.SHARD])
        if n == 0:
            return {column: [] for column in LEDGER_COLUMNS + ["fragment"]}
        rejected = [bool(r) for r in batch[B.REJECT_REASON]]
        columns = {}
        for field in FRAGMENT_SCHEMA:
            values = _column(batch, field, n)
            if field.name not in KEPT_ON_REJECT:
                # A rejected row keeps only who it is and why; its partial results are not data.
                values = [None if r else v for v, r in zip(values, rejected)]
            if not field.nullable:
                values = ["" if v is None else v for v in values]
            columns[field.name] = values
        table = pa.table(columns, schema=FRAGMENT_SCHEMA)
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"{uuid.uuid4().hex}.parquet")
        pq.write_table(table, path + TMP_SUFFIX)
        os.replace(path + TMP_SUFFIX, path)
        summary = {column: columns[column] for column in LEDGER_COLUMNS}
        summary["fragment"] = [path] * n
        return summary


def read_ledger(fragment: str) -> pa.Table:
    """The bookkeeping columns of a fragment, without its image bytes."""
    return pq.read_table(fragment, columns=LEDGER_COLUMNS)


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
                        CAPTION_EXT: row["caption"].encode("utf-8"),
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


def commit_shard(out_dir: str, shard: str, fragments: list, failpoint=_no_failpoint) -> dict:
    """Write shards/SHARD.tar, rejects/SHARD.parquet and stats/SHARD.parquet (the commit point).

    `failpoint(point)` is called part-way through the tar, once its first block is in the file
    ("shard_tar", not reached by a tar under 10 KB), and between the tar's rename and the stats'
    ("shard_commit"); the crash tests pass one (stages do not import the pipeline's failpoints)."""
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
        reject_rows = [
            {"source": r[B.SOURCE], "key": r[B.KEY] or None, "shard": shard, "stage": r[B.REJECT_STAGE],
             "reason": r[B.REJECT_REASON], "error": r[B.REJECT_ERROR]}
            for r in rejects
        ]
        pq.write_table(pa.Table.from_pylist(reject_rows, schema=REJECT_SCHEMA), rejects_path + TMP_SUFFIX)
        os.replace(rejects_path + TMP_SUFFIX, rejects_path)
    os.replace(tar_path + TMP_SUFFIX, tar_path)
    failpoint("shard_commit")
    os.replace(stats_path + TMP_SUFFIX, stats_path)
    return {"name": shard, "samples": len(samples), "rejected": len(rejects), "bytes": tar_bytes, "sha256": tar_sha}
