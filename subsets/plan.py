"""Which samples of the parent output a subset keeps: the plan, decided once.

Steps, in order: the `--where` predicate (DuckDB over the parent's stats parquet), then each
dedup (exact by sha256, near by CLIP embedding; the first sample by key stays), then the top
fraction by a numeric column (ties by key). The plan (shard, row, key of every kept sample) is
stored in the subset before any shard is written, so a rerun keeps exactly what the first run
chose, even where the near-duplicate search is approximate.
"""
from __future__ import annotations

import io
import json
import math
from typing import Dict, List, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixcap.analysis.duplicates import exact_duplicates, near_duplicates, sha256_digests
from pixcap.schemas import JobError
from pixcap.schemas.records import KEY, SHA256
from pixcap.schemas.selection import DEDUP_EXACT, PLAN_KEY, PLAN_ROW, PLAN_SHARD, Selection

from pixcap.output import layout
from pixcap.output.storage import Storage

FILE_COLUMN = "filename"  # DuckDB's read_parquet(filename=true)
ROW_COLUMN = "file_row_number"  # DuckDB's read_parquet(file_row_number=true)
NUMERIC_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT", "FLOAT", "DOUBLE"}
PLAN_SCHEMA = pa.schema([pa.field(PLAN_SHARD, pa.string()), pa.field(PLAN_ROW, pa.int64()), pa.field(PLAN_KEY, pa.string())])


def _one_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _stats_relation(parent: Storage, shards: list):
    """DuckDB's view of the parent's committed stats (every file the manifest lists), with each
    row's file and position. A remote output is read through its fsspec filesystem."""
    import duckdb

    connection = duckdb.connect()
    if parent.local:
        files = [parent.path(entry["stats"]["path"]) for entry in shards]
    else:
        connection.register_filesystem(parent.fs)
        files = [parent.url(entry["stats"]["path"]) for entry in shards]
    relation = connection.read_parquet(files, filename=True, file_row_number=True, union_by_name=True)
    return connection, relation


def _check_by(relation, by: str) -> None:
    types = dict(zip(relation.columns, (str(t) for t in relation.types)))
    if by not in types or by in (FILE_COLUMN, ROW_COLUMN):
        raise JobError(f"--by {by}: no such column in the stats (numeric ones: "
                       f"{', '.join(name for name, t in types.items() if t in NUMERIC_TYPES and name != ROW_COLUMN)})")
    if types[by] not in NUMERIC_TYPES:
        raise JobError(f"--by {by}: a {types[by]} column; the top fraction needs a number")


def candidates(parent: Storage, shards: list, selection: Selection) -> pa.Table:
    """The samples the predicate keeps, in key order: key, shard, row (+ sha256, + the `by` column)."""
    import duckdb

    connection, relation = _stats_relation(parent, shards)
    try:
        if selection.top_fraction is not None:
            _check_by(relation, selection.by)
        if selection.where.strip():
            try:
                relation = relation.filter(duckdb.SQLExpression(selection.where))
            except duckdb.Error as e:
                raise JobError(f"--where: {_one_line(e)}") from None
        columns = [KEY, FILE_COLUMN, ROW_COLUMN]
        if any(d.kind == DEDUP_EXACT for d in selection.dedup):
            columns.append(SHA256)
        if selection.top_fraction is not None and selection.by not in columns:
            columns.append(selection.by)
        try:
            table = relation.select(*[duckdb.ColumnExpression(c) for c in columns]).order(KEY).to_arrow_table()
        except duckdb.Error as e:  # the predicate is bound and run here: an unknown column, a bad cast
            raise JobError(f"--where: {_one_line(e)}") from None
    finally:
        connection.close()
    shard_names = [layout.shard_of(f) for f in table.column(FILE_COLUMN).to_pylist()]
    return table.drop_columns([FILE_COLUMN]).append_column(PLAN_SHARD, pa.array(shard_names, pa.string()))


def load_embeddings(parent: Storage, shards: list, table: pa.Table) -> np.ndarray:
    """The CLIP image embeddings of the table's rows, in its order (float16, one shard file at a time)."""
    by_name = {entry["name"]: entry for entry in shards}
    names = np.array(table.column(PLAN_SHARD).to_pylist(), dtype=object)
    rows = table.column(ROW_COLUMN).to_numpy()
    vectors = None
    for name in sorted(set(names)):
        entry = by_name[name]
        if not entry.get("embeddings"):
            raise JobError(f"--dedup clip: shard {name} of the parent has no CLIP embeddings "
                           "(an output made before pixcap stored them); use --dedup exact")
        matrix = np.load(io.BytesIO(parent.read_bytes(entry["embeddings"]["path"])), allow_pickle=False)
        if len(matrix) != entry["samples"]:
            raise RuntimeError(f"parent shard {name}: {len(matrix)} embeddings for {entry['samples']} samples")
        where = np.flatnonzero(names == name)
        if vectors is None:
            vectors = np.empty((len(table), matrix.shape[1]), dtype=np.float16)
        vectors[where] = matrix[rows[where]]
    return vectors if vectors is not None else np.empty((0, 0), dtype=np.float16)


def _top(table: pa.Table, fraction: float, by: str) -> np.ndarray:
    """Positions (in key order) of the best round(fraction * n) rows by `by`; rows without a value never count."""
    values = table.column(by).to_numpy(zero_copy_only=False).astype(np.float64)
    wanted = int(math.floor(fraction * len(values) + 0.5))
    scored = np.flatnonzero(~np.isnan(values))
    order = scored[np.lexsort((scored, -values[scored]))]  # highest first, the earlier key on a tie
    return np.sort(order[:wanted])


def plan_selection(parent: Storage, shards: list, selection: Selection) -> Tuple[pa.Table, Dict[str, int]]:
    """The kept samples as a plan table sorted by (shard, row), and how many each step left."""
    table = candidates(parent, shards, selection)
    counts = {"parent": sum(entry["samples"] for entry in shards)}
    if selection.where.strip():
        counts["where"] = len(table)
    for dedup in selection.dedup:
        if dedup.kind == DEDUP_EXACT:
            dropped = exact_duplicates(sha256_digests(table.column(SHA256)))
        else:
            dropped = near_duplicates(load_embeddings(parent, shards, table), dedup.threshold)
        table = table.filter(pa.array(~dropped))
        counts[f"dedup {dedup.spec()}"] = len(table)
    if selection.top_fraction is not None:
        table = table.take(pa.array(_top(table, selection.top_fraction, selection.by)))
        counts[f"top {selection.top_fraction:g} by {selection.by}"] = len(table)
    plan = pa.table({PLAN_SHARD: table.column(PLAN_SHARD), PLAN_ROW: table.column(ROW_COLUMN).cast(pa.int64()),
                     PLAN_KEY: table.column(KEY)}, schema=PLAN_SCHEMA)
    return plan.sort_by([(PLAN_SHARD, "ascending"), (PLAN_ROW, "ascending")]), counts


def write_plan(storage: Storage, plan: pa.Table, counts: Dict[str, int]) -> None:
    buffer = io.BytesIO()
    pq.write_table(plan.replace_schema_metadata({"pixcap.counts": _encode_counts(counts)}), buffer)
    storage.write_bytes(layout.PLAN, buffer.getvalue())


def read_plan(storage: Storage):
    """(plan, counts) a run stored, or None when none did."""
    try:
        data = storage.read_bytes(layout.PLAN)
    except FileNotFoundError:
        return None
    table = pq.read_table(io.BytesIO(data))
    counts = _decode_counts((table.schema.metadata or {}).get(b"pixcap.counts", b"{}"))
    return table.replace_schema_metadata(None), counts


def _encode_counts(counts: Dict[str, int]) -> str:
    return json.dumps(list(counts.items()))


def _decode_counts(raw: bytes) -> Dict[str, int]:
    return dict(json.loads(raw)) if raw.strip().startswith(b"[") else {}


def kept_rows(plan: pa.Table) -> Dict[str, Tuple[List[int], List[str]]]:
    """{shard: (rows, keys)} of the plan, shards in name order."""
    shards = plan.column(PLAN_SHARD).to_pylist()
    rows = plan.column(PLAN_ROW).to_pylist()
    keys = plan.column(PLAN_KEY).to_pylist()
    kept: Dict[str, Tuple[List[int], List[str]]] = {}
    for shard, row, key in zip(shards, rows, keys):
        entry = kept.setdefault(shard, ([], []))
        entry[0].append(row)
        entry[1].append(key)
    return dict(sorted(kept.items()))
