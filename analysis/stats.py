"""`pixcap stats`: PixArt-alpha's Table 1 (concept density) for a dataset, from its parquet only.

Reads the stats parquets one file at a time, in record batches, so memory grows with the number of
distinct nouns, not with the number of images or files (tests/pipeline/test_memory.py holds it
to a bound on 1,000,000 rows).

Not pyarrow.dataset: its fragments keep the parquet metadata of every file scanned, about 50 KB
a shard file (`pixcap stats` on 4,000 shards of 1000 rows peaked at 878 MB with it, 164 MB
without), and its read-ahead queued 176 MB of batches when this loop was the slower side.
"""
from __future__ import annotations

import glob
import json
import os
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixcap.schemas.manifest import STATS_DIR

VALID_NOUN_MIN_COUNT = 10  # PixArt: a valid noun appears more than 10 times
COLUMNS = ["nouns", "n_nouns", "clip_score", "n_grounded"]
NOUNS_PER_COUNT = 1 << 20  # flattened nouns gathered before one value_counts: about 10 MB


def _count_nouns(nouns: Counter, pending: list) -> None:
    if pending:
        counts = pc.value_counts(pa.chunked_array(pending, pa.string()))
        nouns.update(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())))
        pending.clear()


def concept_density(out_dir: str, valid_min_count: int = VALID_NOUN_MIN_COUNT, batch_rows: int = 65536) -> dict:
    files = sorted(glob.glob(os.path.join(out_dir, STATS_DIR, "*.parquet")))
    if not files:
        raise FileNotFoundError(f"no stats parquet under {os.path.join(out_dir, STATS_DIR)}")
    nouns = Counter()
    pending, pending_len = [], 0  # flattened nouns of the last batches, counted together
    images = total_nouns = grounded = clip_n = 0
    clip_sum = 0.0
    for path in files:
        with pq.ParquetFile(path) as parquet:  # one file open at a time; its metadata goes with it
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=COLUMNS):
                images += batch.num_rows
                total_nouns += pc.sum(batch.column("n_nouns")).as_py() or 0
                grounded += pc.sum(batch.column("n_grounded")).as_py() or 0
                scores = batch.column("clip_score").drop_null()
                clip_n += len(scores)
                clip_sum += pc.sum(scores).as_py() or 0.0
                flat = pc.list_flatten(batch.column("nouns"))
                pending.append(flat)
                pending_len += len(flat)
                if pending_len >= NOUNS_PER_COUNT:  # many small shards: one count per ~1M nouns, not per file
                    _count_nouns(nouns, pending)
                    pending_len = 0
    _count_nouns(nouns, pending)
    valid = sum(1 for c in nouns.values() if c > valid_min_count)
    return density_table(images, total_nouns, len(nouns), valid, valid_min_count, clip_sum, clip_n, grounded)


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


def format_table(table: dict) -> str:
    """The figures as PixArt's Table 1 lays them out, one row per dataset."""
    rows = [
        ("images", f"{table['images']:,}"),
        ("total nouns", f"{table['total_nouns']:,}"),
        ("distinct nouns (DN)", f"{table['distinct_nouns']:,}"),
        (f"valid distinct nouns (VN, > {table['valid_min_count']} times)", f"{table['valid_distinct_nouns']:,}"),
        ("VN/DN", f"{table['vn_dn'] * 100:.1f}%"),
        ("average nouns per image", f"{table['nouns_per_image']:.2f}"),
        ("mean clip_score", f"{table['mean_clip_score']:.4f}"),
        ("average grounded nouns per image", f"{table['grounded_nouns_per_image']:.2f}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:>12}" for name, value in rows)


def stats_command(args) -> int:
    table = concept_density(args.output, args.valid_min_count)
    print(json.dumps(table, indent=2) if args.json else format_table(table))
    return 0
