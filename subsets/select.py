"""`pixcap select`: cut a subset out of an output, as a pixcap output of its own.

The subset's shards keep the names of the parent shards they come from, each holding the kept
samples of its parent shard, byte for byte (subsets/commit.py). Exactly once, as
`pixcap run`: the subset is locked, its manifest says what it is cut from and how before any
shard is written, the plan of kept samples is stored once (subsets/plan.py), and a
rerun removes what a killed run left half-written and commits only the shards not committed.
A rerun with another selection, from another parent, or from a parent that changed since, is
refused: a subset holds one selection of one parent.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from pixcap.analysis.parquet_check import reading_failed, unreadable_file
from pixcap.log_stream import LogStream
from pixcap.schemas import JobError
from pixcap.schemas.selection import PARENT_KEY, SELECTION_KEY, Selection

from pixcap.output import failpoints, layout
from pixcap.output.ledger import Ledger
from pixcap.output.lock import OutputLock
from pixcap.output.manifest import (
    input_counts, is_pixcap_manifest, new_manifest, package_versions, read_manifest, shard_entries, totals,
    write_manifest,
)
from pixcap.output.provenance import run_entry, utc_now
from pixcap.analysis.stats import card_table
from pixcap.output.card import write_dataset_card
from pixcap.output.session import ended_status, existing_manifest, record_end, taken_output
from pixcap.output.storage import Storage
from .commit import commit_subset_shard
from .plan import kept_rows, plan_selection, read_plan, write_plan

COPY_THREADS = 2  # shards copied at once: reading and writing overlap, on a disk or an object store
SELECT_PACKAGES = ("duckdb", "faiss-cpu")  # what decides a subset's content besides the parent's own


def parent_digest(manifest: dict) -> str:
    """A digest of the parent's committed files, from its manifest: another shard, or another
    file under a shard's name, changes it."""
    files = [[s["name"], *[(s.get(kind) or {}).get("sha256", "") for kind in ("stats", "tar", "embeddings", "rejects")]]
             for s in manifest.get("shards", [])]
    return "sha256:" + hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()


def _planned(parent: Storage, shards: list, selection: Selection):
    """plan_selection, or one line naming the parent's stats parquet that could not be read: DuckDB's
    errors on a damaged file do not name it (and one reached while the predicate runs reads like
    a --where error). The files are read one by one only once planning failed."""
    try:
        return plan_selection(parent, shards, selection)
    except Exception as e:
        if not (reading_failed(e) or isinstance(e, JobError)):
            raise
        paths = {parent.url(entry["stats"]["path"]): entry["stats"]["path"] for entry in shards}
        named = unreadable_file(paths, lambda url: parent.open(paths[url]))
        if named is None:
            raise
        raise named from None


def _parent(parent: Storage) -> dict:
    manifest = read_manifest(parent)
    if not is_pixcap_manifest(manifest):
        raise JobError(f"{parent.url()}: no pixcap manifest.json there; select cuts subsets of pixcap outputs")
    last = (manifest.get("runs") or [{}])[-1]
    if last.get("status") != "finished":
        raise JobError(f"{parent.url()}: its last run ({last.get('started')}) did not finish ({last.get('status')}); "
                       "complete it (run the same command again) before selecting from it")
    return manifest


def _same_place(parent: Storage, subset: Storage) -> bool:
    if parent.local and subset.local:
        inner, outer = os.path.realpath(subset.root), os.path.realpath(parent.root)
        return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)
    return subset.url().rstrip("/") == parent.url().rstrip("/") or subset.url().startswith(parent.url().rstrip("/") + "/")


def _versions(parent_manifest: dict) -> dict:
    return {**(parent_manifest.get("versions") or {}), **package_versions(SELECT_PACKAGES)}


def new_subset_manifest(parent_manifest: dict, parent_record: dict, selection: Selection) -> dict:
    """A subset's manifest before its first shard: the parent's configuration, models and inputs
    (their shard prefixes name the subset's shards too), the parent, and the selection."""
    manifest = new_manifest({**parent_manifest["fingerprint"], **selection.fingerprint()})
    inputs = [{**entry, "written": 0, "rejected": 0} for entry in parent_manifest.get("inputs", [])]
    manifest.update(job=parent_manifest.get("job"), versions=_versions(parent_manifest),
                    models=parent_manifest.get("models", {}), inputs=inputs)
    manifest[PARENT_KEY] = parent_record
    manifest[SELECTION_KEY] = selection.to_dict()
    return manifest


def check_subset(manifest, parent_record: dict, selection: Selection, url: str) -> None:
    """An existing subset may only be continued with the same selection of the same, unchanged parent."""
    if manifest is None:
        return
    if SELECTION_KEY not in manifest or PARENT_KEY not in manifest:
        raise JobError(f"--output {url} is an output of `pixcap run`, not a subset; choose a new or empty folder")
    recorded = manifest[SELECTION_KEY]
    if recorded != selection.to_dict():
        changed = [f"{k}: {recorded.get(k)!r} -> {v!r}" for k, v in selection.to_dict().items() if recorded.get(k) != v]
        raise JobError(f"--output {url} holds another selection ({'; '.join(changed)}); "
                       "one subset holds one selection: write to a new folder")
    parent = manifest[PARENT_KEY]
    if parent.get("url") != parent_record["url"]:
        raise JobError(f"--output {url} was cut from {parent.get('url')}, not {parent_record['url']}")
    if parent.get("digest") != parent_record["digest"]:
        raise JobError(f"--output {url}: its parent {parent_record['url']} changed since the subset was started; "
                       "write the subset to a new folder")


def count_selection(parent_url: str, selection: Selection, storage_options=None) -> dict:
    """How many samples each step of the selection leaves, writing nothing (`--dry-run`)."""
    parent = Storage(parent_url, storage_options)
    parent_manifest = _parent(parent)
    return _planned(parent, parent_manifest["shards"], selection)[1]


def select_subset(parent_url: str, subset_url: str, selection: Selection, command=None, stream=None,
                  storage_options=None) -> dict:
    """Write the subset of parent_url that `selection` keeps to subset_url; returns its manifest.
    Everything that can refuse the selection does so before the subset is touched. Messages go to
    stream; without one, to the `pixcap.subsets.select` logger."""
    stream = stream or LogStream(logging.getLogger(__name__))
    parent, subset = Storage(parent_url, storage_options), Storage(subset_url, storage_options)
    if _same_place(parent, subset):
        raise JobError(f"--output {subset.url()} is the parent output or inside it; choose another folder")
    parent_manifest = _parent(parent)
    parent_record = {"url": parent.url(), "fingerprint": parent_manifest["fingerprint"],
                     "digest": parent_digest(parent_manifest)}
    existing = existing_manifest(subset)
    check_subset(existing, parent_record, selection, subset.url())
    # Planned before the subset is touched: a predicate DuckDB refuses, or a dedup the parent
    # cannot give (no embeddings), stops here with nothing written.
    planned = None if existing is not None and read_plan(subset) is not None else \
        _planned(parent, parent_manifest["shards"], selection)
    with taken_output(subset, stream, "subset",
                      lambda found: check_subset(found, parent_record, selection, subset.url())) as (manifest, lock):
        manifest = manifest or new_subset_manifest(parent_manifest, parent_record, selection)
        return _select_locked(parent, parent_manifest, subset, selection, manifest, planned, lock, stream,
                              command or sys.argv)


def _describe_counts(counts: dict) -> str:
    return "; ".join(f"{step}: {n:,}" for step, n in counts.items())


def _select_locked(parent: Storage, parent_manifest: dict, subset: Storage, selection: Selection, manifest: dict,
                   planned, lock: OutputLock, stream, command: list) -> dict:
    run = run_entry(list(command))
    manifest["runs"].append(run)
    write_manifest(subset, manifest)  # the folder is a subset, and says of what, before any shard
    removed = Ledger(subset, {entry["prefix"] for entry in manifest["inputs"]}).clean_uncommitted()
    if removed:
        print(f"pixcap: removed {len(removed)} half-written files of an earlier run", file=stream)
    stored = read_plan(subset)  # a stored plan wins: it is what the shards already written hold
    if stored is None:
        plan, counts = planned or _planned(parent, parent_manifest["shards"], selection)
        lock.check()
        write_plan(subset, plan, counts)
    else:
        plan, counts = stored
    print(f"pixcap select: {selection.describe()}: {_describe_counts(counts)}", file=stream)
    kept = kept_rows(plan)
    committed = set(layout.shard_names(subset.listdir(layout.STATS), "stats"))
    todo = [name for name in kept if name not in committed]
    print(f"pixcap select: {len(kept)} shards hold kept samples, {len(kept) - len(todo)} already written; "
          f"subset {subset.url()}", file=stream)
    files, written = {}, 0
    by_name = {entry["name"]: entry for entry in parent_manifest["shards"]}

    def copy(name: str) -> dict:
        lock.check()
        rows, keys = kept[name]
        return commit_subset_shard(parent, by_name[name], subset, rows, keys, failpoints.reached)

    pool = ThreadPoolExecutor(COPY_THREADS)
    try:
        for result in pool.map(copy, todo):  # results in order; the first failure stops the run
            files.update(result["files"])
            written += result["samples"]
    except BaseException as e:
        pool.shutdown(wait=True, cancel_futures=True)  # no copy outlives the lock
        record_end(subset, manifest, run, ended_status(e), written=written)
        raise
    pool.shutdown()
    manifest["shards"] = shard_entries(subset, set(kept), manifest["shards"], files)
    manifest["totals"] = totals(manifest["shards"])
    input_counts(manifest["inputs"], manifest["shards"])
    run.update(ended=utc_now(), status="finished", written=written, rejected=0, selected=counts)
    write_manifest(subset, manifest)
    write_dataset_card(subset, manifest, card_table(subset.url(), manifest))
    return manifest
