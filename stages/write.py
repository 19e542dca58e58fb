"""write: finished rows -> a fragment table (sample columns, where the stored bytes are, reject and
ledger columns).

Rows reach the writer in any order and from many workers; the pipeline stores each batch's table
as one fragment file and tells the driver's ledger which inputs are done (the ledger columns),
and a shard is committed once all its inputs are in fragments (pipeline/commit.py).
"""
from __future__ import annotations

import math

import pyarrow as pa

from pixcap.schemas import batch as B
from pixcap.schemas import rejects as R
from pixcap.schemas.fragments import FRAGMENT_SCHEMA

from .keys import printable_name
from .outcomes import RowOutcomes, error_text

STAGE = "write"

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
    if pa.types.is_integer(field.type):  # Ray hands a column of ints with a None as floats, None as NaN
        return [None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v) for v in values]
    if pa.types.is_boolean(field.type):
        return [None if v is None else bool(v) for v in values]
    if pa.types.is_binary(field.type):
        return [None if v is None else bytes(v) for v in values]
    return [None if v is None else _text(v) for v in values]


def _text(value) -> str:
    """A string column's value as valid UTF-8: a file name that is not (its bytes held as lone
    surrogates) would make the whole fragment unwritable, so its bytes are kept as \\xNN."""
    text = str(value)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return printable_name(text)


def _stripped(batch: dict) -> dict:
    """The batch with rejected rows' data taken out (None) before any value is converted, so that the
    value a row was rejected for is never converted again."""
    rejected = [bool(r) for r in batch[B.REJECT_REASON]]
    return {column: values if column in KEPT_ON_REJECT else [None if r else v for v, r in zip(values, rejected)]
            for column, values in batch.items()}


def _table(batch: dict, schema: pa.Schema) -> pa.Table:
    """The batch as a fragment table, rejected rows stripped of data."""
    n = len(batch[B.SHARD])
    stripped = _stripped(batch)
    columns = {}
    for field in schema:
        values = _column(stripped, field, n)
        if not field.nullable:
            values = ["" if v is None else v for v in values]
        columns[field.name] = values
    return pa.table(columns, schema=schema)


def _row(batch: dict, i: int) -> dict:
    return {column: [values[i]] for column, values in batch.items()}


def fragment_table(batch: dict, schema: pa.Schema = None) -> pa.Table:
    """The batch as a fragment: every column of schema (FRAGMENT_SCHEMA, or a job's: fragment_schema), rejected
    rows stripped of data. A row whose values the table cannot hold becomes a reject row (write_error)
    instead of failing the batch: only when the batch fails is each live row tried alone."""
    schema = FRAGMENT_SCHEMA if schema is None else schema
    try:
        return _table(batch, schema)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    outcomes = RowOutcomes(batch, STAGE)
    for i in outcomes.live_rows():
        try:
            _table(_row(batch, i), schema)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            outcomes.reject(i, R.WRITE_ERROR, error_text(e))
    return _table({**batch, **outcomes.columns()}, schema)


def ledger_summary(table: pa.Table, fragment: str) -> dict:
    """What the driver receives of a fragment's rows: the ledger columns, and where they are."""
    summary = {column: table.column(column).to_pylist() for column in B.LEDGER_COLUMNS}
    summary[B.FRAGMENT] = [fragment] * table.num_rows
    return summary
