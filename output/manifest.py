"""manifest.json: what an output holds, how it was made, and how to check every file of it.

Written when a run starts (so the output is a pixcap output before its first shard, with the
run in its history) and again when it ends, rebuilt from the committed stats parquets' footers:
a shard known from the previous manifest, and not committed again, is taken from it, so a rerun
does not reread or rehash old shards.
"""
from __future__ import annotations

import importlib.metadata
import io
import json
from collections import Counter

import pyarrow.parquet as pq

from pixcap.schemas import JobError
from pixcap.schemas import stages as registry
from pixcap.schemas.manifest import (
    MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, SHARD_META_BYTES, SHARD_META_EMBEDDINGS_SHA256,
    SHARD_META_REJECTED, SHARD_META_REJECTS_SHA256, SHARD_META_SHA256,
)
from pixcap.schemas import rejects as R
from pixcap.schemas.shards import parse_shard_name

from .layout import shard_files, shard_of
from .manifest_check import check_manifest
from .storage import Storage

VERSIONED_PACKAGES = ("pixcap", "torch", "transformers", "open_clip_torch", "spacy", "ray", "webdataset", "pyarrow", "pillow")


def package_versions(names=VERSIONED_PACKAGES) -> dict:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def models_entry(job, resolved, revisions: dict) -> dict:
    """The manifest's `models`: each model stage's model as the job named it (`name`, then its other
    model keys by name), as resolved, and its revision."""
    models = {}
    resolved_configs = {found.name: found.config for found in registry.model_stages(resolved)}
    for found in registry.model_stages(job):
        spec, config, resolved_config = found.spec, found.config, resolved_configs[found.name]
        entry = {"backend": config.backend} if spec.backends else {}
        first, *others = spec.model_keys
        entry["name"] = getattr(config, first.key)
        entry.update({model_key.key: getattr(config, model_key.key) for model_key in others})
        paths = [getattr(resolved_config, model_key.key) for model_key in spec.model_keys]
        if spec.runs_model(config):
            entry["resolved"] = paths[0] if len(paths) == 1 else paths
        entry["revision"] = revisions[found.name]
        models[found.name] = entry
    return models


def read_manifest(storage: Storage):
    """The output's manifest, or None when it has none."""
    try:
        data = storage.read_bytes(MANIFEST_NAME)
    except FileNotFoundError:
        return None
    try:
        manifest = json.loads(data)
    except ValueError:
        raise JobError(f"{storage.url(MANIFEST_NAME)} is not valid JSON; this output cannot be trusted") from None
    if is_pixcap_manifest(manifest):  # its prefixes, shard names and paths become paths written
        check_manifest(manifest, storage.url(MANIFEST_NAME))
    return manifest


def is_pixcap_manifest(manifest) -> bool:
    return isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT


def write_manifest(storage: Storage, manifest: dict) -> None:
    # An input URI that is not UTF-8 (a latin-1 folder name) holds lone surrogates; backslashreplace
    # writes each as `\udcNN`, JSON's own escape for it, so the manifest reads back the same URI.
    text = json.dumps(manifest, indent=2, ensure_ascii=False)
    storage.write_bytes(MANIFEST_NAME, text.encode("utf-8", "backslashreplace"))


def new_manifest(fingerprint: dict) -> dict:
    return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "fingerprint": fingerprint, "job": None,
            "versions": {}, "models": {}, "inputs": [], "runs": [], "shards": [], "totals": {}}


def _footer(storage: Storage, path: str):
    with storage.open(path) as f:
        return pq.read_metadata(io.BytesIO(f.read()))


def _reasons(storage: Storage, path: str) -> dict:
    with storage.open(path) as f:
        return dict(Counter(pq.read_table(io.BytesIO(f.read()), columns=[R.REASON]).column(R.REASON).to_pylist()))


def _shard_entry(storage: Storage, name: str, committed_now: dict) -> dict:
    """A shard's entry from its stats footer and this run's commit results (hashing only what
    neither knows: a shard an earlier run committed but did not get into the manifest)."""
    paths = shard_files(name)
    meta = _footer(storage, paths["stats"])
    kv = meta.metadata or {}
    tar_bytes = int(kv.get(SHARD_META_BYTES, b"0"))

    def described(path: str, sha: str = "") -> dict:
        known = committed_now.get(path)
        if known:
            return {"path": path, **known}
        return {"path": path, "bytes": storage.size(path), "sha256": sha or storage.sha256(path)}

    return {
        "name": name,
        "samples": meta.num_rows,
        "rejected": int(kv.get(SHARD_META_REJECTED, b"0")),
        "rejected_by_reason": _reasons(storage, paths["rejects"]),
        "tar": described(paths["tar"], kv.get(SHARD_META_SHA256, b"").decode()) if tar_bytes else None,
        "embeddings": (described(paths["embeddings"], kv[SHARD_META_EMBEDDINGS_SHA256].decode())
                       if kv.get(SHARD_META_EMBEDDINGS_SHA256) else None),
        "stats": described(paths["stats"]),
        "rejects": described(paths["rejects"], kv.get(SHARD_META_REJECTS_SHA256, b"").decode()),
    }


def shard_entries(storage: Storage, committed: set, previous: list, committed_now: dict) -> list:
    known = {entry["name"]: entry for entry in previous or []}
    recommitted = {shard_of(path) for path in committed_now}
    return [known[name] if name in known and name not in recommitted else _shard_entry(storage, name, committed_now)
            for name in sorted(committed)]


def totals(shards: list) -> dict:
    written = sum(s["samples"] for s in shards)
    rejected = sum(s["rejected"] for s in shards)
    reasons = Counter()
    for shard in shards:
        reasons.update(shard["rejected_by_reason"])
    return {
        "inputs": written + rejected, "written": written, "rejected": rejected,
        "shards": len(shards), "tars": sum(1 for s in shards if s["tar"]),
        "bytes": sum(s["tar"]["bytes"] for s in shards if s["tar"]),
        "rejected_by_reason": dict(sorted(reasons.items())),
    }


def input_counts(inputs: list, shards: list) -> None:
    """Each input's written and rejected counts, from the shards named with its prefix."""
    by_prefix = {}
    for shard in shards:
        parsed = parse_shard_name(shard["name"])
        counts = by_prefix.setdefault(parsed[0] if parsed else "", [0, 0])
        counts[0] += shard["samples"]
        counts[1] += shard["rejected"]
    for entry in inputs:
        entry["written"], entry["rejected"] = by_prefix.get(entry["prefix"], [0, 0])


def manifest_files(manifest: dict) -> list:
    """Every committed file with its bytes and sha256: what `pixcap verify` checks."""
    files = []
    for shard in manifest.get("shards", []):
        files += [shard[kind] for kind in ("tar", "embeddings", "stats", "rejects") if shard.get(kind)]
    return files
