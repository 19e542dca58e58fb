"""`pixcap run`: list inputs, take up the ledger, run the Ray graph, commit shards as they fill."""
from __future__ import annotations

import os
import sys
from collections import defaultdict

from pixcap.schemas import Job, JobError
from pixcap.schemas import batch as B

from . import failpoints
from .commit import Committer
from .engine import check_cluster, start_ray
from .inputs import InputError, list_parts
from .ledger import Ledger
from .lock import OutputInUse, OutputLock, describe
from .manifest import models_entry, write_manifest
from .models import resolve_models
from .ray_errors import stage_failure


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output(job: Job) -> None:
    if not job.output:
        raise JobError("output: no output folder; set output in the job or pass --output")
    for uri in job.inputs:
        if "://" not in uri or uri.startswith("file://"):
            folder = uri.removeprefix("file://").split("*")[0]
            if folder and os.path.isdir(folder) and _inside(job.output, folder):
                raise JobError(f"output: {job.output} is inside the input folder {uri}")


class StageError(RuntimeError):
    """A stage of the Ray graph failed for good (worker crashes are retried; errors are not)."""


def run_job(job: Job, address=None, stream=None) -> dict:
    """Run a validated job; returns the manifest. Messages go to stream (default: stderr)."""
    stream = stream or sys.stderr
    check_output(job)
    try:
        parts = list_parts(job.inputs, job.shard_size)
    except InputError as e:
        raise JobError(str(e)) from None
    # Everything that can refuse the job does so before the output folder is touched.
    resolved = resolve_models(job)
    check_cluster(address, resolved)
    os.makedirs(job.output, exist_ok=True)
    lock = OutputLock(job.output)
    try:
        stale = lock.acquire()
    except OutputInUse as e:
        raise JobError(str(e)) from None
    if stale is not None:
        print(f"pixcap: took over the stale lock of a run that is gone ({describe(stale)}); resuming its output", file=stream)
    try:
        return _run_locked(job, resolved, parts, address, stream)
    finally:
        lock.release()


def _parts_to_do(parts: list, ledger: Ledger, shard_size: int) -> list:
    """The parts not done yet, each with the positions of its inputs already done."""
    done_parts = ledger.done_parts()
    todo = []
    for part in parts:
        if part[B.PART_ID] not in done_parts:
            # A folder chunk is exactly one shard of its folder's prefix; a tar has as many as it needs.
            shard_count = 1 if part[B.PART_KIND] == "files" else None
            skip = ledger.skip_positions(part[B.PART_SHARD_PREFIX], part[B.PART_FIRST_SHARD], shard_count, shard_size)
            todo.append({**part, B.PART_SKIP: skip})
    return todo


def _stream(todo: list, resolved: Job, address, stream, ledger: Ledger, committer: Committer) -> None:
    """Run the Ray graph over the parts to do, recording fragments and committing shards as they fill."""
    import ray

    from .graph import build_dataset
    from .progress import ProgressCounter, ProgressPrinter

    start_ray(address, resolved)
    counter = ProgressCounter.remote()
    printer = ProgressPrinter(counter, resolved.progress_seconds, stream)
    batches = iter(build_dataset(todo, resolved, counter).iter_batches(batch_size=None))
    while True:
        try:
            rows = next(batches, None)
        except ray.exceptions.RayError as e:
            raise StageError(stage_failure(e)) from None
        if rows is None:
            break
        by_fragment = defaultdict(lambda: defaultdict(list))
        for i, fragment in enumerate(rows[B.FRAGMENT]):
            for column in B.LEDGER_COLUMNS:
                by_fragment[fragment][column].append(rows[column][i])
        for fragment, columns in by_fragment.items():
            ledger.add(fragment, columns)
            failpoints.reached("fragment")
        committer.collect()  # a failed commit stops the run here
        committer.submit_complete()
        printer.maybe_print(committer.written, committer.rejected)
    committer.settle()  # the last block's complete shards were submitted inside the loop
    printer.maybe_print(committer.written, committer.rejected, force=True)


def _run_locked(job: Job, resolved: Job, parts: list, address, stream) -> dict:
    ledger = Ledger(job.output)
    removed = ledger.clean_uncommitted()
    if removed:
        print(f"pixcap: removed {len(removed)} half-written files of an earlier run", file=stream)
    ledger.load_fragments()
    with Committer(job.output, ledger) as committer:  # leaving it shuts the commit pool down
        # Shards an earlier run finished but did not commit: committed first, so that parts
        # whose inputs all reached fragments are marked done and not read again.
        committer.submit_complete()
        committer.settle()
        todo = _parts_to_do(parts, ledger, job.shard_size)
        print(f"pixcap: {len(parts)} input parts, {len(parts) - len(todo)} already done; output {job.output}", file=stream)
        if todo:
            _stream(todo, resolved, address, stream, ledger, committer)
    ledger.mark_finished_parts()
    if ledger.shards:
        incomplete = ", ".join(sorted(ledger.shards)[:5])
        raise RuntimeError(f"shards left incomplete after the run: {incomplete}; run again to retry")
    return write_manifest(job.output, job.to_dict(), models_entry(job, resolved))
