"""write: finished rows -> one fragment (a parquet file) per batch, in the folder it is given.

Rows reach the writer in any order and from many workers; the driver's ledger learns from the
returned ledger columns which inputs are done, and commits a shard once all its inputs are in
fragments (pipeline/commit.py).
"""
from __future__ import annotations

import math
import os
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from pixcap.schemas import batch as B
from pixcap.schemas.fragments import FRAGMENT_SCHEMA
from pixcap.schemas.manifest import TMP_SUFFIX

# A rejected row keeps only who it is and why; its partial results are not data.
KEPT_ON_REJECT = frozenset(B.LEDGER_COLUMNS + [B.KEY, B.SOURCE, B.REJECT_STAGE, B.REJECT_REASON, B.REJECT_ERROR])


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

    def __init__(self, directory: str):
        self.directory = directory

    def __call__(self, batch: dict) -> dict:
        n = len(batch[B.SHARD])
        if n == 0:
            return {column: [] for column in B.LEDGER_COLUMNS + [B.FRAGMENT]}
        rejected = [bool(r) for r in batch[B.REJECT_REASON]]
        columns = {}
        for field in FRAGMENT_SCHEMA:
            values = _column(batch, field, n)
            if field.name not in KEPT_ON_REJECT:
                values = [None if r else v for v, r in zip(values, rejected)]
            if not field.nullable:
                values = ["" if v is None else v for v in values]
            columns[field.name] = values
        table = pa.table(columns, schema=FRAGMENT_SCHEMA)
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"{uuid.uuid4().hex}.parquet")
        pq.write_table(table, path + TMP_SUFFIX)
        os.replace(path + TMP_SUFFIX, path)
        summary = {column: columns[column] for column in B.LEDGER_COLUMNS}
        summary[B.FRAGMENT] = [path] * n
        return summary
