"""A committed parquet file as bytes, written so that every reader takes it, with no rows too.

pyarrow's write_table gives a table of no rows one row group of no rows, and HF datasets reads a
file in batches the size of its first row group: `BatchSize must be greater than 0`, for the
whole set of files. A file without any row group holds the same schema and footer metadata, and
datasets, DuckDB, polars, pandas, pyarrow and Ray read it as no rows
(tests/output/test_parquet.py reads such an output with each of them).
"""
from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()  # a shard's parquet is small; pyarrow wants a real file object
    with pq.ParquetWriter(buffer, table.schema) as writer:
        if table.num_rows:
            writer.write_table(table)
    return buffer.getvalue()
