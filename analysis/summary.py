"""Everything the report shows about one output, gathered in one streaming pass over its stats
parquet (plus a 3-column pass for the gallery's median), one file and one batch at a time.

What is kept grows with the number of distinct nouns (as `pixcap stats`) and of shards (one
table row each), never with the number of images: the per-image statistics go into fixed-bin
histograms, and the noun counter is cut to the top nouns and the VN curve before returning.
"""
from __future__ import annotations

import dataclasses
import heapq
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixcap.schemas.records import CAPTION, CLIP_SCORE, HEIGHT, KEY, N_GROUNDED, N_NOUNS, SHA256, SHARD, WIDTH
from pixcap.schemas.records import score_columns

from .caption_length import T5TokenCounter, caption_words, t5_tokens
from .distributions import ASPECT_RATIO, CAPTION_T5_TOKENS, CAPTION_WORDS, DISTRIBUTIONS, OPTIONAL, column_values
from .distributions import score_distribution
from .duplicate_counts import DuplicateCounts, ExactTally, near_duplicate_count
from .gallery import ScoreExtremes, nearest_scores
from .histogram import Histogram
from .rejects import RejectTally
from .stats import COLUMNS as TABLE_COLUMNS
from .stats import VALID_NOUN_MIN_COUNT, ConceptTally, captioner_names, iter_batches, stats_files
from .thumbnails import Example, read_examples
from .training_fit import TrainingFit

TOP_NOUNS = 50
VN_THRESHOLDS = range(1, 101)
BATCH_ROWS = 16384  # captions ride along: ~8 MB a batch at LLaVA's ~500 characters
PASS_COLUMNS = sorted(set(TABLE_COLUMNS) | {KEY, SHARD, CAPTION, WIDTH, HEIGHT, SHA256})
OPTIONAL_COLUMNS = sorted(OPTIONAL)  # read where a file has them


@dataclasses.dataclass
class ShardRow:
    name: str
    samples: int
    rejects: int
    mean_clip_score: float  # NaN when no sample has a score


@dataclasses.dataclass
class OutputSummary:
    path: str
    label: str
    table: dict  # Table 1, as `pixcap stats --json` prints it
    histograms: Dict[str, Histogram]
    tokens_exact: bool  # caption T5 tokens counted by a real tokenizer
    top_nouns: List[Tuple[str, int]]
    vn_curve: List[int]  # VN at each of VN_THRESHOLDS
    fit: TrainingFit
    rejects: RejectTally
    shards: List[ShardRow]
    gallery: Dict[str, List[Example]]  # "lowest" / "median" / "highest"
    duplicates: DuplicateCounts
    scores: List[str] = dataclasses.field(default_factory=list)  # classifiers' columns, in histograms too


def valid_noun_curve(counts: np.ndarray) -> List[int]:
    """VN as its threshold moves: the nouns seen more than t times, for each t in VN_THRESHOLDS."""
    ordered = np.sort(counts)
    return [int(len(ordered) - np.searchsorted(ordered, t, side="right")) for t in VN_THRESHOLDS]


def _add_batch(batch, histograms: Dict[str, Histogram], fit: TrainingFit, counter: Optional[T5TokenCounter],
               scores=()) -> None:
    for name in (CLIP_SCORE, N_NOUNS, N_GROUNDED, WIDTH, HEIGHT, *OPTIONAL_COLUMNS, *scores):
        if name in batch.schema.names:
            histograms[name].add(column_values(batch, name))
    captions = batch.column(CAPTION)
    words = caption_words(captions)
    histograms[CAPTION_WORDS].add(words)
    histograms[CAPTION_T5_TOKENS].add(t5_tokens(captions, words, counter))
    width, height = column_values(batch, WIDTH), column_values(batch, HEIGHT)
    with np.errstate(divide="ignore", invalid="ignore"):
        histograms[ASPECT_RATIO].add(np.where(height > 0, width / height, np.nan))
    fit.add(np.nan_to_num(width), np.nan_to_num(height))


def summarise_output(path: str, label: str, counter: Optional[T5TokenCounter] = None,
                     valid_min_count: int = VALID_NOUN_MIN_COUNT, batch_rows: int = BATCH_ROWS) -> OutputSummary:
    files = stats_files(path)
    tally, extremes, fit, rejects = ConceptTally(), ScoreExtremes(), TrainingFit(), RejectTally()
    histograms = {name: spec.new_histogram() for name, spec in DISTRIBUTIONS.items()}
    shards = []
    layout = []  # (rows, optional columns present) of each file, read from the footers first
    score_names = []  # the classifiers' columns (the job named them), from the files' schemas
    for file in files:
        with pq.ParquetFile(file) as parquet:
            names = score_columns(parquet.schema_arrow)
            layout.append((parquet.metadata.num_rows,
                           [c for c in OPTIONAL_COLUMNS if c in parquet.schema_arrow.names] + names))
            score_names += [name for name in names if name not in score_names]
    histograms.update({name: score_distribution(name).new_histogram() for name in score_names})
    exact = ExactTally(sum(rows for rows, _ in layout))
    captioners = {name: ConceptTally(name) for name in captioner_names(files[0])}  # Table 1 per captioner
    captioner_columns = sorted({column for each in captioners.values() for column in each.columns})
    for file, (_, optional) in zip(files, layout):
        samples, clip_sum, clip_n = 0, 0.0, 0
        columns = sorted(set(PASS_COLUMNS + optional + captioner_columns))
        for batch in iter_batches(file, columns, batch_rows):
            tally.add(batch)
            for each in captioners.values():
                each.add(batch)
            exact.add(batch.column(SHA256))
            extremes.add(batch)
            _add_batch(batch, histograms, fit, counter, [name for name in score_names if name in batch.schema.names])
            scores = batch.column(CLIP_SCORE).drop_null()
            samples += batch.num_rows
            clip_sum += pc.sum(scores).as_py() or 0.0
            clip_n += len(scores)
        name = os.path.splitext(os.path.basename(file))[0]  # a shard's stats file is named after it
        shards.append(ShardRow(name, samples, rejects.add_shard(path, name), clip_sum / clip_n if clip_n else float("nan")))
    nouns = tally.noun_counts()
    top = heapq.nsmallest(TOP_NOUNS, nouns.items(), key=lambda kv: (-kv[1], kv[0]))
    curve = valid_noun_curve(np.fromiter(nouns.values(), dtype=np.int64, count=len(nouns)))
    table = tally.table(valid_min_count)
    if captioners:
        table["captioners"] = {name: each.table(valid_min_count) for name, each in captioners.items()}
    nouns.clear()  # the counter is the one thing here that grows with the data; let it go now
    median = histograms[CLIP_SCORE].percentile(50)
    picks = {"lowest": extremes.lowest, "median": nearest_scores(files, median) if histograms[CLIP_SCORE].count else [],
             "highest": extremes.highest}
    gallery = {group: read_examples(path, chosen) for group, chosen in picks.items()}
    duplicates = DuplicateCounts(exact.count(), *near_duplicate_count(files))
    return OutputSummary(path, label, table, histograms, counter is not None, top, curve, fit, rejects, shards, gallery,
                         duplicates, score_names)
