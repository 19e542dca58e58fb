"""`pixcap jobs [NAME]`: the example jobs installed with pixcap (package pixcap.jobs)."""
from __future__ import annotations

import difflib

from pixcap.schemas import JobError


def jobs_command(args) -> int:
    from pixcap.jobs import FOLDER, shipped_jobs, summary

    jobs = shipped_jobs()
    if args.name:
        if args.name not in jobs:
            close = difflib.get_close_matches(args.name, list(jobs), n=1)
            raise JobError(f"no shipped job {args.name}" + (f"; did you mean {close[0]}?" if close else
                                                              f" (shipped: {', '.join(jobs)})"))
        with open(jobs[args.name], encoding="utf-8") as f:
            print(f.read(), end="")
        return 0
    width = max(map(len, jobs), default=0)
    for name, path in jobs.items():
        print(f"{name:<{width}}  {summary(path)}")
    print(f"\n{len(jobs)} jobs in {FOLDER}. Run one by name (pixcap run local), or copy one to edit:"
          f" pixcap jobs local > my_job.yaml")
    return 0


def register(subparsers) -> None:
    jobs = subparsers.add_parser("jobs", help="list the example jobs installed with pixcap, or print one")
    jobs.add_argument("name", nargs="?", help="a job's name (e.g. local): print its YAML")
    jobs.set_defaults(func=jobs_command)
