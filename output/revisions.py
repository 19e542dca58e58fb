"""Which weights produced the data: a hub commit, or a content hash of a local model's files.

Hashing a 14 GB folder takes minutes, so a folder's hash is cached beside the tiny models
(models_cache/revisions.json), keyed by each file's path, size and mtime: a rerun hashes
nothing again unless a file changed.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from pixcap.schemas import Job
from pixcap.schemas import stages as registry

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".model", ".txt")
CACHE_FILE = "revisions.json"


def _file_key(path: Path) -> str:
    stat = path.stat()
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class RevisionCache:
    """File hashes kept across runs (a JSON file of {path|size|mtime: sha256})."""

    def __init__(self, cache_dir: str):
        self.path = Path(os.path.expanduser(cache_dir)) / CACHE_FILE
        try:
            self.hashes = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.hashes = {}
        self.changed = False

    def file_hash(self, path: Path) -> str:
        key = _file_key(path)
        if key not in self.hashes:
            self.hashes[key], self.changed = _sha256(path), True
        return self.hashes[key]

    def save(self) -> None:
        if self.changed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_suffix(".pixcap-tmp")
            temp.write_text(json.dumps(self.hashes, indent=0, sort_keys=True))
            os.replace(temp, self.path)


def local_revision(path: str, cache: RevisionCache) -> str:
    """sha256 over a model file, or over a folder's weight and config files by relative name."""
    root = Path(path)
    if root.is_file():
        return "sha256:" + cache.file_hash(root)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
        digest.update(f"{file.relative_to(root)}\0{cache.file_hash(file)}\n".encode())
    return "sha256:" + digest.hexdigest()


def hub_revision(repo_id: str) -> str:
    """The commit of a hub model as this machine's Hugging Face cache holds it, or 'hub:unresolved'
    (the workers download it; the driver may never see it)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
        if isinstance(found, str):
            return "hub:" + Path(found).parent.name  # .../snapshots/COMMIT/config.json
    except Exception:  # an unparseable name or an unreadable cache: the revision is unknown
        pass
    return "hub:unresolved"


def spacy_revision(name: str) -> str:
    """The spaCy model's package version (or its registry mirror's)."""
    from pixcap.stages.nouns import MODEL_MIRRORS

    for package in (name, *MODEL_MIRRORS.get(name, ())):
        try:
            return f"{package}=={importlib.metadata.version(package)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"{name}==unknown"


def _model_revision(kind: str, name: str, cache: RevisionCache) -> str:
    if kind == registry.SPACY:
        return spacy_revision(name)
    if os.path.exists(name):
        return local_revision(name, cache)
    if kind == registry.OPEN_CLIP_CONFIG:
        return name  # an open_clip model name: its architecture is in open_clip's version
    if kind == registry.OPEN_CLIP_CHECKPOINT:
        return f"open_clip:{name}"
    return hub_revision(name)


def model_revisions(resolved: Job) -> dict:
    """{stage: revision} for the models of a job whose names are resolved (pipeline/models.py): each
    stage of the registry that is on; a stage whose backend runs no model gives the backend's name.
    An optional stage that is off has none, so the fingerprint of an output without it stays as it was."""
    cache = RevisionCache(resolved.models_cache)
    revisions = {}
    for found in registry.model_stages(resolved):
        config = found.config
        if not found.runs_model():
            revisions[found.name] = config.backend
            continue
        revisions[found.name] = " ".join(_model_revision(model_key.kind, getattr(config, model_key.key), cache)
                                         for model_key in found.spec.model_keys)
    cache.save()
    return revisions
