"""manifest.json, rebuilt from the committed stats parquets' footers and the rejects tables."""
from __future__ import annotations

import glob
import importlib.metadata
import json
import os
from collections import Counter

import pyarrow.parquet as pq

from pixcap.schemas.manifest import (
    MANIFEST_NAME, MANIFEST_VERSION, REJECTS_DIR, SHARD_META_BYTES, SHARD_META_REJECTED, SHARD_META_SHA256,
    SHARDS_DIR, STATS_DIR,
)

VERSIONED_PACKAGES = ("pixcap", "torch", "transformers", "open_clip_torch", "spacy", "ray", "webdataset", "pyarrow", "pillow")


def package_versions() -> dict:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def shard_entries(out_dir: str) -> list:
    entries = []
    for stats_path in sorted(glob.glob(os.path.join(out_dir, STATS_DIR, "*.parquet"))):
        name = os.path.basename(stats_path)[: -len(".parquet")]
        meta = pq.read_metadata(stats_path)
        kv = meta.metadata or {}
        entries.append(
            {
                "name": name,
                "tar": f"{SHARDS_DIR}/{name}.tar",
                "stats": f"{STATS_DIR}/{name}.parquet",
                "rejects": f"{REJECTS_DIR}/{name}.parquet" if int(kv.get(SHARD_META_REJECTED, b"0")) else None,
                "samples": meta.num_rows,
                "rejected": int(kv.get(SHARD_META_REJECTED, b"0")),
                "bytes": int(kv.get(SHARD_META_BYTES, b"0")),
                "sha256": kv.get(SHARD_META_SHA256, b"").decode(),
            }
        )
    return entries


def rejected_by_reason(out_dir: str) -> dict:
    counts = Counter()
    for path in glob.glob(os.path.join(out_dir, REJECTS_DIR, "*.parquet")):
        counts.update(pq.read_table(path, columns=["reason"]).column("reason").to_pylist())
    return dict(sorted(counts.items()))


def models_entry(job, resolved) -> dict:
    """The manifest's `models`: each stage's model as the job named it and as it was resolved."""
    return {
        "caption": {"backend": job.caption.backend, "name": job.caption.model, "resolved": resolved.caption.model},
        "nouns": {"name": job.nouns.model},
        "clip": {"name": job.clip.model, "pretrained": job.clip.pretrained,
                 "resolved": [resolved.clip.model, resolved.clip.pretrained]},
    }


def write_manifest(out_dir: str, job: dict, models: dict) -> dict:
    shards = shard_entries(out_dir)
    written = sum(s["samples"] for s in shards)
    rejected = sum(s["rejected"] for s in shards)
    manifest = {
        "version": MANIFEST_VERSION,
        "job": job,
        "versions": package_versions(),
        "models": models,
        "shards": shards,
        "totals": {
            "inputs": written + rejected,
            "written": written,
            "rejected": rejected,
            "shards": len(shards),
            "bytes": sum(s["bytes"] for s in shards),
            "rejected_by_reason": rejected_by_reason(out_dir),
        },
    }
    path = os.path.join(out_dir, MANIFEST_NAME)
    with open(path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(path + ".tmp", path)
    return manifest
