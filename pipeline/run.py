"""`pixcap run`: list inputs, check the output is this job's, take up the ledger, run the Ray graph,
commit shards as they fill, and record what was made in the manifest."""
from __future__ import annotations

import logging
import os
import sys
from collections import defaultdict

from pixcap.log_stream import LogStream
from pixcap.schemas import Job, JobError
from pixcap.schemas import batch as B
from pixcap.schemas import stages as registry

from pixcap.output import failpoints, layout
from pixcap.output.commit import Committer
from .engine import check_cluster, start_ray
from pixcap.output.fingerprint import differences, fingerprint
from .inputs import InputError, list_sources
from pixcap.output.ledger import Ledger
from pixcap.output.lock import OutputLock
from pixcap.output.manifest import (
    input_counts, models_entry, new_manifest, package_versions, shard_entries,
    totals, write_manifest,
)
from .models import resolve_models
from .parts import make_parts, record_sources
from pixcap.output.provenance import run_entry, utc_now
from .ray_errors import stage_failure
from pixcap.output.revisions import model_revisions
from pixcap.analysis.stats import card_table
from pixcap.output.card import write_dataset_card
from pixcap.output.session import ended_status, existing_manifest, record_end, taken_output
from pixcap.output.storage import Storage


class StageError(RuntimeError):
    """A stage of the Ray graph failed for good (worker crashes are retried; errors are not)."""


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output(job: Job) -> None:
    if not job.output:
        raise JobError("output: no output folder; set output in the job or pass --output")
    local = "://" not in job.output or job.output.startswith("file://")
    for uri in job.inputs:
        if local and ("://" not in uri or uri.startswith("file://")):
            folder = uri.removeprefix("file://").split("*")[0]
            if folder and os.path.isdir(folder) and _inside(job.output.removeprefix("file://"), folder):
                raise JobError(f"output: {job.output} is inside the input folder {uri}")


def check_fingerprint(manifest, current: dict, url: str) -> None:
    if manifest is None:
        return
    changed = differences(manifest["fingerprint"], current)
    if changed:
        raise JobError(f"output: {url} was made with other settings, and one output holds one configuration: "
                       f"{'; '.join(changed[:6])}{'; ...' if len(changed) > 6 else ''}. "
                       "Run with the output's settings, or write to a new output")


def run_job(job: Job, address=None, stream=None, command=None, verbose: bool = False) -> dict:
    """Run a validated job; returns the manifest. Messages and progress lines go to stream; without one,
    to the `pixcap.pipeline.run` logger (pixcap.log_stream). Everything that can refuse the job does so
    before the output is touched."""
    stream = stream or LogStream(logging.getLogger(__name__))
    check_output(job)
    try:
        sources = list_sources(job.inputs, job.storage_options, job.input_identity)
    except InputError as e:
        raise JobError(str(e)) from None
    resolved = resolve_models(job)
    revisions = model_revisions(resolved)
    current = fingerprint(job, revisions)
    storage = Storage(job.output, job.storage_options)
    manifest = existing_manifest(storage)
    check_fingerprint(manifest, current, storage.url())
    record_sources(sources, manifest["inputs"] if manifest else [], storage.url())
    check_cluster(address, resolved, quiet=not verbose)
    with taken_output(storage, stream, "output", lambda found: check_fingerprint(found, current, storage.url())) \
            as (manifest, lock):
        records = record_sources(sources, manifest["inputs"] if manifest else [], storage.url())
        manifest = manifest or new_manifest(current)
        return _run_locked(job, resolved, revisions, sources, records, manifest, storage, lock, address, stream,
                           command or sys.argv, verbose)


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


def _log_dir(storage: Storage) -> str:
    """Where Ray's console output goes: OUT/_logs on a local output, a local cache folder otherwise."""
    if storage.local:
        return storage.path(layout.LOGS)
    import hashlib

    return os.path.expanduser(f"~/.cache/pixcap/logs/{hashlib.sha1(storage.url().encode()).hexdigest()[:12]}")


def _stream(todo: list, resolved: Job, storage: Storage, address, stream, ledger: Ledger, committer: Committer,
            lock: OutputLock, verbose: bool) -> None:
    """Run the Ray graph over the parts to do, recording fragments and committing shards as they fill."""
    import ray

    from .engine import describe_waiting, native_output_to
    from .graph import build_dataset
    from .progress import Progress, ProgressCounter

    log_dir = _log_dir(storage)
    resolved = start_ray(address, resolved, log_dir=None if verbose else log_dir, verbose=verbose, stream=stream)
    committer.cpus = resolved.ray.cpus_per_task  # as fitted to the cluster, or commits wait for the actors
    if not verbose:
        print(f"pixcap: Ray's own messages go to {log_dir} (--verbose shows them here)", file=stream)
    console_before = sys.stderr
    with native_output_to(None if verbose else log_dir) as console:
        if stream is console_before:  # pixcap's own lines stay on the console; Ray's native ones go to the log
            stream = console
        counter = ProgressCounter.remote()
        part_bytes = sum(part[B.PART_BYTES] for part in todo)
        progress = Progress(counter, len(todo), part_bytes, resolved.progress_seconds, resolved.stall_seconds, stream,
                            stages=registry.progress_stages(resolved),
                            waiting=describe_waiting)
        with progress:
            batches = iter(build_dataset(todo, resolved, storage, counter).iter_batches(batch_size=None))
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
                lock.check()  # another run took the output over (an expired lease): stop, write nothing more
                committer.submit_complete()
                progress.committed.written, progress.committed.rejected = committer.written, committer.rejected
                progress.committed.parts = ledger.parts_finished
            committer.settle()  # the last block's complete shards were submitted inside the loop
            progress.committed.written, progress.committed.rejected = committer.written, committer.rejected
            progress.committed.parts = ledger.parts_finished


def _run_locked(job: Job, resolved: Job, revisions: dict, sources: list, records: list, manifest: dict,
                storage: Storage, lock: OutputLock, address, stream, command: list, verbose: bool) -> dict:
    known = {entry["uri"] for entry in manifest["inputs"]}
    added = [record for record in records if record["uri"] not in known]
    manifest["inputs"] += added
    run = {**run_entry(list(command)), "added_inputs": [record["uri"] for record in added]}
    manifest["runs"].append(run)
    manifest.update(job=job.to_dict(), versions=package_versions(), models=models_entry(job, resolved, revisions))
    write_manifest(storage, manifest)  # the output is pixcap's, and says what this run adds, before any shard

    ledger = Ledger(storage, {entry["prefix"] for entry in manifest["inputs"]})
    removed = ledger.clean_uncommitted()
    if removed:
        print(f"pixcap: removed {len(removed)} half-written files of an earlier run", file=stream)
    ledger.load_fragments()
    parts = make_parts(sources, records, job.shard_size)
    committer = Committer(storage, ledger, job.ray.cpus_per_task)
    try:
        with committer:  # leaving it lets the commits under way finish (on an error) and shuts the pool down
            # Shards an earlier run finished but did not commit: committed first, so that parts
            # whose inputs all reached fragments are marked done and not read again.
            committer.submit_complete()
            committer.settle()
            todo = _parts_to_do(parts, ledger, job.shard_size)
            print(f"pixcap: {len(parts)} input parts, {len(parts) - len(todo)} already done; output {storage.url()}",
                  file=stream)
            if todo:
                _stream(todo, resolved, storage, address, stream, ledger, committer, lock, verbose)
    except BaseException as e:  # recorded after the commits under way ended, so the counts include them
        record_end(storage, manifest, run, ended_status(e), written=committer.written, rejected=committer.rejected)
        raise
    ledger.mark_finished_parts()
    if ledger.shards:
        incomplete = ", ".join(sorted(ledger.shards)[:5])
        raise RuntimeError(f"shards left incomplete after the run: {incomplete}; run again to retry")
    manifest["shards"] = shard_entries(storage, ledger.committed(), manifest["shards"], committer.files)
    manifest["totals"] = totals(manifest["shards"])
    input_counts(manifest["inputs"], manifest["shards"])
    run.update(ended=utc_now(), status="finished", written=committer.written, rejected=committer.rejected)
    write_manifest(storage, manifest)
    write_dataset_card(storage, manifest, card_table(storage.url(), manifest))
    return manifest
