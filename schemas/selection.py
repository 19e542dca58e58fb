"""A subset of an output (`pixcap select`): what was asked for, and how its manifest records it.

A subset is a pixcap output like any other; its manifest adds two top-level keys beside
schemas/manifest.py's:
  parent     {"url", "fingerprint", "digest"}: the output it was cut from; digest covers the
             parent's committed files, so a parent that changed is noticed
  selection  Selection.to_dict(): the predicate, the top fraction and the dedup, in the order
             they are applied (where, then dedup, then the top fraction of what is left)
Its fingerprint is the parent's plus the selection's `selection.*` keys, so `pixcap run` never
adds inputs to a subset, and a rerun of `pixcap select` with another selection is refused.
"""
from __future__ import annotations

import dataclasses
import math
import typing

from .job import JobError, quote
from .records import CLIP_SCORE

PARENT_KEY = "parent"
SELECTION_KEY = "selection"
PLAN_NAME = "selection.parquet"  # under WORK_DIR: the kept rows, written once before any shard

DEDUP_EXACT = "exact"  # one sample per original sha256
DEDUP_CLIP = "clip"  # "clip:THRESHOLD": one per group whose CLIP image embeddings reach that cosine
DEFAULT_BY = CLIP_SCORE

# Columns of the plan parquet: one row per kept sample, sorted by (shard, row).
PLAN_SHARD = "shard"
PLAN_ROW = "row"  # the sample's position in its parent shard's stats parquet (and embeddings)
PLAN_KEY = "key"


@dataclasses.dataclass(frozen=True)
class Dedup:
    kind: str  # DEDUP_EXACT or DEDUP_CLIP
    threshold: typing.Optional[float] = None  # the cosine, for DEDUP_CLIP

    def spec(self) -> str:
        return self.kind if self.threshold is None else f"{self.kind}:{self.threshold:g}"


def parse_dedup(spec: str) -> Dedup:
    """'exact' or 'clip:0.95' (a cosine in (0, 1]); JobError for anything else."""
    kind, sep, value = spec.strip().partition(":")
    if kind == DEDUP_EXACT and not sep:
        return Dedup(DEDUP_EXACT)
    if kind == DEDUP_CLIP and sep:
        try:
            threshold = float(value)
        except ValueError:
            threshold = math.nan
        if 0.0 < threshold <= 1.0:
            return Dedup(DEDUP_CLIP, threshold)
        raise JobError(f"--dedup {quote(spec)}: the cosine must be a number in (0, 1], e.g. clip:0.95")
    raise JobError(f"--dedup {quote(spec)}: expected {DEDUP_EXACT} or {DEDUP_CLIP}:COSINE (e.g. {DEDUP_CLIP}:0.95)")


@dataclasses.dataclass(frozen=True)
class Selection:
    where: str = ""  # a DuckDB SQL predicate over the stats columns; "" keeps every sample
    top_fraction: typing.Optional[float] = None  # keep this share of the samples with the highest `by`
    by: str = DEFAULT_BY
    dedup: typing.Tuple[Dedup, ...] = ()  # applied in order

    def __post_init__(self):
        if self.top_fraction is not None and not 0.0 < self.top_fraction <= 1.0:
            raise JobError(f"--top-fraction: must be in (0, 1], got {quote(self.top_fraction)}")
        if not (self.where.strip() or self.top_fraction is not None or self.dedup):
            raise JobError("nothing to select by: give --where, --top-fraction or --dedup")
        kinds = [d.kind for d in self.dedup]
        if len(set(kinds)) != len(kinds):
            raise JobError("--dedup: give each kind once (exact and clip:COSINE may be combined)")

    def to_dict(self) -> dict:
        return {"where": self.where, "top_fraction": self.top_fraction,
                "by": self.by if self.top_fraction is not None else None,
                "dedup": [d.spec() for d in self.dedup]}

    def fingerprint(self) -> dict:
        """The `selection.*` entries a subset's fingerprint adds to its parent's."""
        return {f"{SELECTION_KEY}.{name}": value for name, value in self.to_dict().items()}

    def describe(self) -> str:
        parts = [f"where {self.where}"] if self.where.strip() else []
        parts += [f"dedup {d.spec()}" for d in self.dedup]
        if self.top_fraction is not None:
            parts.append(f"top {self.top_fraction:g} by {self.by}")
        return ", ".join(parts)
