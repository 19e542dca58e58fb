"""Fragments: the parquet files workers write finished rows to, before a shard is committed.

A fragment holds the sample columns, where the stored image bytes are (a blob under _work/blobs),
the reject columns and the ledger columns (which shard, which position, whether the shard or the part ends there).
"""
import pyarrow as pa

from . import batch as B
from .records import SAMPLE_SCHEMA

WORK_FIELDS = [
    pa.field(B.INDEX, pa.int32()),
    pa.field(B.SHARD_COUNT, pa.int32()),
    pa.field(B.PART_END, pa.bool_()),
    pa.field(B.PART_ID, pa.string()),
    pa.field(B.STORED_AT, pa.string()),
    pa.field(B.BLOB_MEMBERS, pa.list_(pa.string())),
    pa.field(B.CLIP_EMBEDDING, pa.binary()),
    pa.field(B.REJECT_STAGE, pa.string()),
    pa.field(B.REJECT_REASON, pa.string()),
    pa.field(B.REJECT_ERROR, pa.string()),
]
WORK_COLUMNS = frozenset(field.name for field in WORK_FIELDS)


def fragment_schema(record: pa.Schema = SAMPLE_SCHEMA) -> pa.Schema:
    """A fragment's columns for an output whose record is `record` (schemas/stages.py: record_schema(job))."""
    return pa.schema([*WORK_FIELDS, *record])


def record_of(fragment: pa.Schema) -> pa.Schema:
    """The record (the stats' schema) a fragment's schema holds, field metadata and all."""
    return pa.schema([field for field in fragment if field.name not in WORK_COLUMNS])


FRAGMENT_SCHEMA = fragment_schema()
