"""Which parquet file of an output is unreadable, once reading it failed.

`report` and `select` read the stats through several passes (pyarrow, DuckDB), and their readers'
errors (`Couldn't deserialize thrift`, `Variable-length int over 10 bytes`) do not name the file.
When a pass fails, each file is read through here, whole, and the first that cannot be read is
named in one line, as `pixcap stats` names it. Nothing is read twice while all is well.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .stats import UnreadableStats

# What a reader raises on a damaged file: pyarrow's errors (OSError for thrift and I/O), DuckDB's.
PARQUET_ERRORS = (pa.ArrowException, OSError)


def reading_failed(error: BaseException) -> bool:
    """Whether an error may come from a damaged parquet (and not from a file that is not there)."""
    if isinstance(error, FileNotFoundError):
        return False
    if isinstance(error, PARQUET_ERRORS):
        return True
    try:
        import duckdb
    except ImportError:
        return False
    return isinstance(error, duckdb.Error)


def unreadable_file(files: Iterable[str], opener: Optional[Callable] = None) -> Optional[UnreadableStats]:
    """The error naming the first file (a URL, or a path opener takes) that cannot be read, or None."""
    opener = opener or (lambda path: fsspec.open(path, "rb"))
    for path in files:
        try:
            with opener(path) as f, pq.ParquetFile(f) as parquet:
                for _ in parquet.iter_batches():
                    pass
        except PARQUET_ERRORS as e:
            text = str(e).strip()
            return UnreadableStats(f"{path}: not a readable parquet ({text.splitlines()[0] if text else type(e).__name__})")
    return None
