"""`pixcap run`: list inputs, take up the ledger, run the Ray graph, commit shards as they fill."""
from __future__ import annotations

import os
import re
import sys
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from pixcap.schemas import Job, JobError
from pixcap.schemas import batch as B
from pixcap.stages.write import LEDGER_COLUMNS, commit_shard

from . import failpoints
from .engine import check_cluster, start_ray
from .inputs import InputError, list_parts
from .ledger import Ledger
from .lock import OutputInUse, OutputLock, describe
from .manifest import write_manifest
from .models import resolve_models

COMMIT_THREADS = 2


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


def _shards_by_prefix(shards) -> dict:
    """{"sa_000000": ["sa_000000-00000", ...]}: shard names grouped by the part prefix they carry."""
    grouped = defaultdict(list)
    for shard in shards:
        prefix, _, number = shard.rpartition("-")
        if number.isdigit():
            grouped[prefix].append(shard)
    return grouped


class CommitError(RuntimeError):
    """A shard could not be committed (a full disk, a write error): the run stops."""


class StageError(RuntimeError):
    """A stage of the Ray graph failed for good (worker crashes are retried; errors are not)."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b[^:]*: ")


def _stage_failure(e: Exception) -> str:
    """One line from a Ray task error: the stage and the user code's exception, which Ray only
    keeps as text (its first exception line is the root cause)."""
    text = _ANSI.sub("", str(e))
    where = re.search(r"ray::(\S+)\(\)", text)
    causes = [line for line in text.splitlines() if _EXCEPTION_LINE.match(line)]
    cause = causes[0] if causes else f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
    return f"stage {where.group(1) if where else '?'} failed: {cause}; fix that and run again to continue"


class Committer:
    """Commits complete shards on a thread pool; the ledger is only touched from the caller.

    A failed commit stops the run at the next collect (the caller then cancels queued commits), and the
    shard's temp files are left to the next run, which removes them and commits it again."""

    def __init__(self, out_dir: str, ledger: Ledger):
        self.out, self.ledger = out_dir, ledger
        self.pool = ThreadPoolExecutor(COMMIT_THREADS)
        self.running = {}  # future -> shard
        self.written = self.rejected = 0

    def submit_complete(self) -> None:
        busy = set(self.running.values())
        for shard in self.ledger.complete_shards():
            if shard not in busy:
                fragments = sorted(self.ledger.shards[shard].fragments)
                self.running[self.pool.submit(commit_shard, self.out, shard, fragments, failpoints.reached)] = shard

    def collect(self, block: bool = False) -> None:
        if not self.running:
            return
        done, _ = wait(list(self.running), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            shard = self.running.pop(future)
            try:
                result = future.result()
            except Exception as e:
                cause = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror and e.filename else str(e)
                cause = cause.splitlines()[0] if cause else type(e).__name__
                raise CommitError(f"could not commit shard {shard}: {cause}; fix that and run again to continue") from e
            self.written += result["samples"]
            self.rejected += result["rejected"]
            self.ledger.committed_shard(shard)

    def settle(self) -> None:
        """Wait for the commits under way."""
        while self.running:
            self.collect(block=True)

    def drain(self) -> None:
        self.settle()
        self.pool.shutdown()


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


def _parts_to_do(parts: list, ledger: Ledger) -> list:
    """The parts not done yet, each with the shards and inputs to skip."""
    done_parts = ledger.done_parts()
    known = _shards_by_prefix(ledger.committed() | set(ledger.shards))
    todo = []
    for part in parts:
        if part[B.PART_ID] not in done_parts:
            shards = known.get(part[B.PART_SHARD_PREFIX], [])
            if part[B.PART_KIND] == "files":  # a folder chunk is one shard of its folder's prefix
                shards = [s for s in shards if s == part[B.PART_ID]]
            todo.append({**part, B.PART_SKIP: ledger.skip_list(sorted(shards))})
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
            raise StageError(_stage_failure(e)) from None
        if rows is None:
            break
        by_fragment = defaultdict(lambda: defaultdict(list))
        for i, fragment in enumerate(rows["fragment"]):
            for column in LEDGER_COLUMNS:
                by_fragment[fragment][column].append(rows[column][i])
        for fragment, columns in by_fragment.items():
            ledger.add(fragment, columns)
            failpoints.reached("fragment")
        committer.collect()  # a failed commit stops the run here
        committer.submit_complete()
        printer.maybe_print(committer.written, committer.rejected)
    committer.drain()  # the last block's complete shards were submitted inside the loop
    printer.maybe_print(committer.written, committer.rejected, force=True)


def _run_locked(job: Job, resolved: Job, parts: list, address, stream) -> dict:
    ledger = Ledger(job.output)
    removed = ledger.clean_uncommitted()
    if removed:
        print(f"pixcap: removed {len(removed)} half-written files of an earlier run", file=stream)
    ledger.load_fragments()
    committer = Committer(job.output, ledger)
    try:
        # Shards an earlier run finished but did not commit: committed first, so that parts
        # whose inputs all reached fragments are marked done and not read again.
        committer.submit_complete()
        committer.settle()
        todo = _parts_to_do(parts, ledger)
        print(f"pixcap: {len(parts)} input parts, {len(parts) - len(todo)} already done; output {job.output}", file=stream)
        if todo:
            _stream(todo, resolved, address, stream, ledger, committer)
        committer.drain()
    finally:
        committer.pool.shutdown(wait=True, cancel_futures=True)  # no commit outlives the lock
    ledger.mark_finished_parts()
    if ledger.shards:
        incomplete = ", ".join(sorted(ledger.shards)[:5])
        raise RuntimeError(f"shards left incomplete after the run: {incomplete}; run again to retry")
    models = {
        "caption": {"backend": job.caption.backend, "name": job.caption.model, "resolved": resolved.caption.model},
        "nouns": {"name": job.nouns.model},
        "clip": {"name": job.clip.model, "pretrained": job.clip.pretrained,
                 "resolved": [resolved.clip.model, resolved.clip.pretrained]},
    }
    return write_manifest(job.output, job.to_dict(), models)
