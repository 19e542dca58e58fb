"""The analyst tools' subcommands of `pixcap`: stats and report (registered by pixcap.cli).

Handlers turn arguments into typed calls of the library functions and return an exit code.
The report is imported inside its handler, so `pixcap --help` does not load matplotlib.
"""
from __future__ import annotations

import json

from pixcap.schemas import JobError

from .rejects import format_rejects
from .stats import VALID_NOUN_MIN_COUNT, concept_density, format_table  # pyarrow only, as pixcap.schemas

DEFAULT_REPORT = "report.html"


def stats_command(args) -> int:
    try:
        table = concept_density(args.output, args.valid_min_count)
    except FileNotFoundError as e:  # no stats where an output should be: a usage error, exit code 2
        raise JobError(str(e)) from None
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    print(format_table(table))
    print(format_rejects(args.output))
    return 0


def report_command(args) -> int:
    from .report import write_report

    try:
        report = write_report(list(args.outputs), args.output, t5_tokenizer=args.t5_tokenizer,
                              valid_min_count=args.valid_min_count)
    except FileNotFoundError as e:
        raise JobError(str(e)) from None
    print(f"pixcap: report on {len(report.summaries)} output(s) written to {report.path} "
          f"({report.bytes / 1e6:.1f} MB)")
    return 0


def register(subparsers) -> None:
    """Add the analyst subcommands; each sets func(args) -> exit code."""
    stats = subparsers.add_parser("stats", help="print PixArt-alpha's concept-density table for an output")
    stats.add_argument("output", help="an output folder of pixcap run")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument("--valid-min-count", type=int, default=VALID_NOUN_MIN_COUNT, help="a valid noun appears more than this many times")
    stats.set_defaults(func=stats_command)

    report = subparsers.add_parser("report", help="write one self-contained HTML report on one or more outputs")
    report.add_argument("outputs", nargs="+", metavar="OUT",
                        help="output folders of pixcap run, shown side by side; also pixcap eval folders "
                             "and user-study JSON files (their models' scores and win rates)")
    report.add_argument("--output", default=DEFAULT_REPORT, help="the HTML file to write")
    report.add_argument("--t5-tokenizer", metavar="PATH",
                        help="a T5 tokenizer folder (or a PixArt pipeline) to count caption tokens exactly; "
                             "without it the count is approximated")
    report.add_argument("--valid-min-count", type=int, default=VALID_NOUN_MIN_COUNT, help="a valid noun appears more than this many times")
    report.set_defaults(func=report_command)
