"""Synthetic stats parquet for `pixcap stats` at scale: OUT/stats/*.parquet in the writer's
schema (schemas/records.py SAMPLE_SCHEMA), seeded, built with vectorised numpy and pyarrow.

Each row has Poisson(NOUNS_PER_ROW) nouns drawn from a VOCABULARY-word vocabulary with Zipf-like
frequencies (rank^-ZIPF), as nouns in captions are: a few very common, a long tail seen once or
twice, so the valid-noun threshold matters. The caption is the nouns joined by spaces; the
grounded nouns are a row's first n_grounded nouns; about 1% of clip_scores are null.

write_stats returns the figures `pixcap stats` must print, computed here from the generator's
own arrays (noun counts by bincount over the vocabulary), not by reading the parquet back.
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixcap.analysis.stats import density_table
from pixcap.schemas.manifest import STATS_DIR
from pixcap.schemas.records import SAMPLE_SCHEMA

VOCABULARY = 50_000
NOUNS_PER_ROW = 14
ZIPF = 1.3
VALID_MIN_COUNT = 10
SYLLABLES = ("ba", "ko", "ri", "ta", "ne", "lu", "mi", "so", "da", "pe", "gu", "fa", "zo", "ki", "ve", "ho",
             "ra", "ju", "wi", "ce", "mo", "ly", "sa", "to", "ni", "qu", "de", "xo", "pa", "el", "an", "or",
             "is", "um", "et", "ar", "on", "ix", "ul", "em")


def vocabulary(size: int = VOCABULARY) -> np.ndarray:
    """size distinct made-up words: a word's syllables are its index's digits in base 40."""
    base = len(SYLLABLES)
    digits = []
    n = np.arange(size)
    for _ in range(max(1, int(np.ceil(np.log(size) / np.log(base))))):
        digits.append(n % base)
        n = n // base
    table = np.array(SYLLABLES)
    words = table[digits[0]]
    for d in digits[1:]:
        words = np.char.add(table[d], words)
    return words


def _hex_strings(rng: np.random.Generator, n: int, nbytes: int = 32) -> pa.Array:
    """n random lowercase hex strings of 2*nbytes characters (sha256-like), without a Python loop."""
    raw = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    text = np.empty((n, nbytes * 2), dtype=np.uint8)
    text[:, 0::2], text[:, 1::2] = chars[raw >> 4], chars[raw & 15]
    offsets = np.arange(0, n * nbytes * 2 + 1, nbytes * 2, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text.tobytes())])


def _numbered(prefix: str, numbers: np.ndarray, suffix: str = "") -> pa.Array:
    strings = pc.cast(pa.array(numbers), pa.string())
    return pc.binary_join_element_wise(prefix, strings, suffix, "")


def _list_slices(values: pa.Array, starts: np.ndarray, lengths: np.ndarray) -> pa.ListArray:
    """A list per row: values[starts[i] : starts[i] + lengths[i]]."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    take = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return pa.ListArray.from_arrays(pa.array(offsets), values.take(pa.array(take)))


def stats_table(rng: np.random.Generator, words: pa.Array, p: np.ndarray, file_no: int, first_row: int, rows: int):
    """One parquet's table, and its figures (noun bincount, sums) for the expected totals."""
    n_nouns = rng.poisson(NOUNS_PER_ROW, rows).astype(np.int32)
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(n_nouns, out=offsets[1:])
    noun_ids = rng.choice(len(p), size=int(offsets[-1]), p=p).astype(np.int32)
    noun_values = words.take(pa.array(noun_ids))
    nouns = pa.ListArray.from_arrays(pa.array(offsets), noun_values)
    n_grounded = rng.binomial(n_nouns, 0.3).astype(np.int32)
    grounded = _list_slices(noun_values, offsets[:-1], n_grounded)
    scores = rng.normal(0.3, 0.05, rows).astype(np.float32)
    score_null = rng.random(rows) < 0.01
    numbers = np.arange(first_row, first_row + rows)
    part = f"sa_{file_no:06d}"
    width = rng.integers(512, 1025, rows).astype(np.int32)
    height = rng.integers(512, 1025, rows).astype(np.int32)
    columns = {
        "key": _numbered(f"{part}/sa_", numbers),
        "shard": pa.array(np.full(rows, f"{part}-00000")),
        "source": _numbered(f"s3://bucket/sa1b/{part}.tar::sa_", numbers, ".jpg"),
        "sha256": _hex_strings(rng, rows),
        "format": pa.array(np.full(rows, "jpeg")),
        "width": pa.array(width),
        "height": pa.array(height),
        "orig_width": pa.array(width * 2),
        "orig_height": pa.array(height * 2),
        "passthrough": pa.array(rng.random(rows) < 0.5),
        "caption": pc.binary_join(nouns, " "),
        "caption_model": pa.array(np.full(rows, "llava-hf/llava-1.5-7b-hf")),
        "nouns": nouns,
        "n_nouns": pa.array(n_nouns),
        "clip_score": pa.array(scores, mask=score_null),
        "grounded_nouns": grounded,
        "n_grounded": pa.array(n_grounded),
        "clip_model": pa.array(np.full(rows, "ViT-L-14/openai")),
        "aesthetic_score": pa.nulls(rows, pa.float32()),  # the optional stage did not run
    }
    table = pa.Table.from_arrays([columns[f.name].cast(f.type) for f in SAMPLE_SCHEMA], schema=SAMPLE_SCHEMA)
    figures = {
        "bincount": np.bincount(noun_ids, minlength=len(p)),
        "total_nouns": int(n_nouns.sum()),
        "grounded": int(n_grounded.sum()),
        "clip_sum": float(scores[~score_null].astype(np.float64).sum()),
        "clip_n": int((~score_null).sum()),
    }
    return table, figures


def write_stats(out_dir, rows: int = 1_000_000, files: int = 20, seed: int = 0,
                valid_min_count: int = VALID_MIN_COUNT) -> dict:
    """Write OUT/stats/sa_NNNNNN-00000.parquet, rows split over files; returns the expected table."""
    rng = np.random.default_rng(seed)
    words = pa.array(vocabulary())
    ranks = rng.permutation(np.arange(1, VOCABULARY + 1, dtype=np.float64))  # word i gets a random rank
    p = ranks ** -ZIPF
    p /= p.sum()
    stats_dir = os.path.join(out_dir, STATS_DIR)
    os.makedirs(stats_dir, exist_ok=True)
    counts = np.zeros(VOCABULARY, dtype=np.int64)
    total_nouns = grounded = clip_n = 0
    clip_sum = 0.0
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    for i in range(files):
        table, figures = stats_table(rng, words, p, i, int(bounds[i]), int(bounds[i + 1] - bounds[i]))
        pq.write_table(table, os.path.join(stats_dir, f"sa_{i:06d}-00000.parquet"))
        counts += figures["bincount"]
        total_nouns += figures["total_nouns"]
        grounded += figures["grounded"]
        clip_sum += figures["clip_sum"]
        clip_n += figures["clip_n"]
    # The counts come from the generator's own draws; only the ratios are the table's arithmetic.
    return density_table(rows, total_nouns, int((counts > 0).sum()), int((counts > valid_min_count).sum()),
                         valid_min_count, clip_sum, clip_n, grounded)
