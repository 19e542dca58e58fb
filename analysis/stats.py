"""`pixcap stats`: PixArt-alpha's Table 1 (concept density) for a dataset, from its parquet only.

Reads the stats parquets one file at a time, in record batches, so memory grows with the number of
distinct nouns, not with the number of images or files (tests/pipeline/test_memory.py holds it
to a bound on 1,000,000 rows). `pixcap report` feeds the same ConceptTally from its own pass, so
its Table 1 is this code's, number for number.

Not pyarrow.dataset: its fragments keep the parquet metadata of every file scanned, about 50 KB
a shard file (`pixcap stats` on 4,000 shards of 1000 rows peaked at 878 MB with it, 164 MB
without), and its read-ahead queued 176 MB of batches when this loop was the slower side.
"""
from __future__ import annotations

import posixpath
from collections import Counter
from typing import Iterator, List, Optional

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from pixcap.output import layout
from pixcap.schemas.records import CLIP_SCORE, N_GROUNDED, N_NOUNS, NOUNS, captioner_column, captioners_of

VALID_NOUN_MIN_COUNT = 10  # PixArt: a valid noun appears more than 10 times
COLUMNS = [NOUNS, N_NOUNS, CLIP_SCORE, N_GROUNDED]  # what ConceptTally.add reads from a batch
NOUNS_PER_COUNT = 1 << 20  # flattened nouns gathered before one value_counts: about 10 MB
BATCH_ROWS = 65536


class UnreadableStats(ValueError):
    """A stats parquet that cannot be read; the message names the file."""


def output_files(out_dir: str, folder: str, pattern: str) -> List[str]:
    """URLs (plain paths locally) of the files matching pattern in a folder of an output on any
    fsspec filesystem, in name order."""
    fs, root = fsspec.core.url_to_fs(out_dir)
    found = sorted(fs.glob(posixpath.join(root.rstrip("/"), folder, pattern)))
    return found if isinstance(fs, LocalFileSystem) else [fs.unstrip_protocol(path) for path in found]


def stats_files(out_dir: str) -> List[str]:
    """The output's committed stats parquets, in name order; FileNotFoundError when there are none."""
    files = output_files(out_dir, layout.STATS, "*.parquet")
    if not files:
        raise FileNotFoundError(f"no stats parquet under {layout.under(out_dir, layout.STATS)}")
    return files


def iter_batches(path: str, columns: List[str], batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """One parquet's record batches; the file (and its metadata) is closed when they run out.
    A file that is no parquet (cut short, overwritten) is named in the error."""
    try:
        with fsspec.open(path, "rb") as f, pq.ParquetFile(f) as parquet:
            yield from parquet.iter_batches(batch_size=batch_rows, columns=columns)
    except (pa.ArrowInvalid, OSError) as e:
        raise UnreadableStats(f"{path}: not a readable parquet ({str(e).splitlines()[0]})") from None


def captioner_names(path: str) -> List[str]:
    """The named captioners of the output a stats parquet belongs to ([] for one `caption:`)."""
    try:
        with fsspec.open(path, "rb") as f:
            return captioners_of(pq.read_schema(f))
    except (pa.ArrowInvalid, OSError) as e:
        raise UnreadableStats(f"{path}: not a readable parquet ({str(e).splitlines()[0]})") from None


class ConceptTally:
    """Table 1's running sums and noun counts, fed one record batch (with COLUMNS, or a named captioner's
    columns: nouns_long, ...) at a time."""

    def __init__(self, captioner: str = "") -> None:
        self.columns = [captioner_column(column, captioner) for column in COLUMNS]
        self.nouns: Counter = Counter()
        self._pending: list = []  # flattened nouns of the last batches, counted together
        self._pending_len = 0
        self.images = self.total_nouns = self.grounded = self.clip_n = 0
        self.clip_sum = 0.0

    def add(self, batch: pa.RecordBatch) -> None:
        nouns, n_nouns, clip_score, n_grounded = self.columns
        self.images += batch.num_rows
        self.total_nouns += pc.sum(batch.column(n_nouns)).as_py() or 0
        self.grounded += pc.sum(batch.column(n_grounded)).as_py() or 0
        scores = batch.column(clip_score).drop_null()
        self.clip_n += len(scores)
        self.clip_sum += pc.sum(scores).as_py() or 0.0
        flat = pc.list_flatten(batch.column(nouns))
        self._pending.append(flat)
        self._pending_len += len(flat)
        if self._pending_len >= NOUNS_PER_COUNT:  # many small shards: one count per ~1M nouns, not per file
            self._count_pending()

    def _count_pending(self) -> None:
        if self._pending:
            counts = pc.value_counts(pa.chunked_array(self._pending, pa.string()))
            self.nouns.update(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())))
            self._pending.clear()
        self._pending_len = 0

    def noun_counts(self) -> Counter:
        """Every distinct noun and how often it appears, over all batches added so far."""
        self._count_pending()
        return self.nouns

    def table(self, valid_min_count: int = VALID_NOUN_MIN_COUNT) -> dict:
        nouns = self.noun_counts()
        valid = sum(1 for c in nouns.values() if c > valid_min_count)
        return density_table(self.images, self.total_nouns, len(nouns), valid, valid_min_count,
                             self.clip_sum, self.clip_n, self.grounded)


def concept_density(out_dir: str, valid_min_count: int = VALID_NOUN_MIN_COUNT, batch_rows: int = BATCH_ROWS) -> dict:
    """Table 1 of the output's (primary) captions; an output of several captioners adds
    "captioners": {name: its Table 1}, each caption's own figures."""
    files = stats_files(out_dir)
    names = captioner_names(files[0])
    tallies = {"": ConceptTally(), **{name: ConceptTally(name) for name in names}}
    columns = [column for tally in tallies.values() for column in tally.columns]
    for path in files:
        for batch in iter_batches(path, columns, batch_rows):
            for tally in tallies.values():
                tally.add(batch)
    table = tallies.pop("").table(valid_min_count)
    if names:
        table["captioners"] = {name: tally.table(valid_min_count) for name, tally in tallies.items()}
    return table


def density_table(images: int, total_nouns: int, distinct: int, valid: int, valid_min_count: int,
                  clip_sum: float, clip_n: int, grounded: int) -> dict:
    """The table from its counts; clip_n counts the images that have a clip_score."""
    return {
        "images": images,
        "total_nouns": total_nouns,
        "distinct_nouns": distinct,
        "valid_distinct_nouns": valid,
        "valid_min_count": valid_min_count,
        "vn_dn": valid / distinct if distinct else 0.0,
        "nouns_per_image": total_nouns / images if images else 0.0,
        "mean_clip_score": clip_sum / clip_n if clip_n else float("nan"),
        "grounded_nouns_per_image": grounded / images if images else 0.0,
    }


def table_rows(table: dict) -> list:
    """(name, formatted value) pairs of Table 1, in the paper's order; the report shows the same rows."""
    return [
        ("images", f"{table['images']:,}"),
        ("total nouns", f"{table['total_nouns']:,}"),
        ("distinct nouns (DN)", f"{table['distinct_nouns']:,}"),
        (f"valid distinct nouns (VN, > {table['valid_min_count']} times)", f"{table['valid_distinct_nouns']:,}"),
        ("VN/DN", f"{table['vn_dn'] * 100:.1f}%"),
        ("average nouns per image", f"{table['nouns_per_image']:.2f}"),
        ("mean clip_score", f"{table['mean_clip_score']:.4f}"),
        ("average grounded nouns per image", f"{table['grounded_nouns_per_image']:.2f}"),
    ]


def format_table(table: dict) -> str:
    """The figures as PixArt's Table 1 lays them out, one row per measure; with several captioners one
    column per captioner, side by side (the primary caption's figures are its captioner's)."""
    rows = table_rows(table)
    width = max(len(name) for name, _ in rows)
    if "captioners" not in table:
        return "\n".join(f"{name:<{width}}  {value:>12}" for name, value in rows)
    columns = {name: dict(table_rows(figures)) for name, figures in table["captioners"].items()}
    header = f"{'captioner':<{width}}" + "".join(f"  {name:>12}" for name in columns)
    return "\n".join([header] + [f"{name:<{width}}" + "".join(f"  {columns[c][name]:>12}" for c in columns)
                                  for name, _ in rows])


def card_table(out_dir: str, manifest: dict) -> Optional[dict]:
    """Table 1 as {measure: value} for the dataset card; None for an output without samples."""
    if not manifest["totals"]["written"]:
        return None
    try:
        return dict(table_rows(concept_density(out_dir)))
    except FileNotFoundError:
        return None
