"""`pixcap select OUT --output SUBSET [--where SQL] [--top-fraction F --by COLUMN] [--dedup exact|clip:COS] [--dry-run]`
(registered by pixcap.cli). The handler turns arguments into one typed call."""
from __future__ import annotations

import sys

from pixcap.schemas import JobError
from pixcap.schemas.manifest import MANIFEST_NAME
from pixcap.schemas.selection import DEFAULT_BY, Selection, parse_dedup


def selection_from_args(args) -> Selection:
    if args.by is not None and args.top_fraction is None:
        raise JobError("--by: only with --top-fraction (it names the column the best fraction is taken by)")
    return Selection(where=args.where or "", top_fraction=args.top_fraction, by=args.by or DEFAULT_BY,
                     dedup=tuple(parse_dedup(spec) for spec in args.dedup))


def select_command(args) -> int:
    from .select import count_selection, select_subset

    selection = selection_from_args(args)
    if args.dry_run:
        counts = count_selection(args.parent, selection)
        for step, n in counts.items():
            print(f"{step:<32} {n:>12,}")
        return 0
    if not args.output:
        raise JobError("--output: no subset folder given (or pass --dry-run to only count)")
    manifest = select_subset(args.parent, args.output, selection, command=["pixcap", *sys.argv[1:]])
    t = manifest["totals"]
    out = args.output.rstrip("/")
    print(f"pixcap select: {t['written']:,} samples in {t['tars']:,} shards written to {out}")
    from pixcap.output import layout

    print(f"  shards    {layout.under(out, layout.shard_glob('tar'))}")
    print(f"  stats     {layout.under(out, layout.shard_glob('stats'))}")
    print(f"  manifest  {layout.under(out, MANIFEST_NAME)} (its parent and selection say how to rebuild it)")
    return 0


def register(subparsers) -> None:
    """Add `pixcap select`; it sets func(args) -> exit code."""
    select = subparsers.add_parser(
        "select", help="write a subset of an output (an SQL predicate, a top fraction, deduplication) as a new output")
    select.add_argument("parent", metavar="OUT", help="an output folder or URL of pixcap run")
    select.add_argument("--output", metavar="SUBSET", help="the subset's folder or URL (new, or this selection's)")
    select.add_argument("--where", metavar="SQL",
                        help="a DuckDB predicate over the stats columns, e.g. \"clip_score >= 0.28 AND n_nouns >= 10\"")
    select.add_argument("--top-fraction", type=float, metavar="F",
                        help="keep this share (0..1] of the samples with the highest --by, as DataComp does")
    select.add_argument("--by", metavar="COLUMN", help=f"the numeric stats column for --top-fraction (default {DEFAULT_BY})")
    select.add_argument("--dedup", action="append", default=[], metavar="exact|clip:COSINE",
                        help="exact: one sample per original sha256; clip:0.95: one per group of CLIP near duplicates "
                             "(repeatable; applied after --where, before --top-fraction; the first key stays)")
    select.add_argument("--dry-run", action="store_true",
                        help="print how many samples each step keeps, and write nothing")
    select.set_defaults(func=select_command)
