"""Which weights a model name stands for: a content hash of a local model's files, or a hub commit.

Hashing a 14 GB folder takes minutes, so a file's hash is cached beside the tiny models
(models_cache/revisions.json), keyed by its path, size and mtime: a rerun hashes nothing again
unless a file changed. The pipeline records these in its manifest; `pixcap encode` records the
T5's and the VAE's beside the features, and the trainer compares them with its own.
"""
from __future__ import annotations

import hashlib
import json
import os
import typing
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".model", ".txt")
CACHE_FILE = "revisions.json"
UNRESOLVED = "hub:unresolved"


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
            temp = self.path.with_suffix(f".{os.getpid()}.pixcap-tmp")  # ranks of one job save at once
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


def hub_revision(repo_id: str, subfolder: str = "") -> str:
    """The commit of a hub model as this machine's Hugging Face cache holds it, or UNRESOLVED
    (the workers download it; the driver may never see it)."""
    names = ([f"{subfolder}/config.json"] if subfolder else []) + ["config.json"]
    try:
        from huggingface_hub import try_to_load_from_cache

        for name in names:
            found = try_to_load_from_cache(repo_id, name)
            if isinstance(found, str):  # .../snapshots/COMMIT/NAME
                return "hub:" + Path(found).parents[name.count("/")].name
    except Exception:  # an unparseable name or an unreadable cache: the revision is unknown
        pass
    return UNRESOLVED


def component_revision(name: str, subfolders: typing.Sequence[str], cache: RevisionCache) -> str:
    """The revision of the model a trainer key names: a local file or folder (of a pipeline, only its
    `subfolders`, such as text_encoder/ and tokenizer/: the transformer beside them is not T5), or a
    hub id with its commit where the cache holds it."""
    if os.path.isdir(name):
        parts = [s for s in subfolders if os.path.isdir(os.path.join(name, s))]
        if parts:
            return " ".join(local_revision(os.path.join(name, s), cache) for s in parts)
        return local_revision(name, cache)
    if os.path.exists(name):
        return local_revision(name, cache)
    commit = hub_revision(name, subfolders[0] if subfolders else "")
    return f"hub:{name}" + ("" if commit == UNRESOLVED else f"@{commit.removeprefix('hub:')}")
