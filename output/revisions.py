"""Which weights produced the data: each stage's model revisions (models/revisions.py: a hub commit,
or a content hash of a local model's files, cached by path, size and mtime in models_cache), and the
spaCy model's package version.
"""
from __future__ import annotations

import importlib.metadata
import os

from pixcap.models.revisions import RevisionCache, hub_revision, local_revision  # noqa: F401 (this module's API too)
from pixcap.schemas import Job
from pixcap.schemas.models import SPACY_MODEL_MIRRORS
from pixcap.schemas import stages as registry


def spacy_revision(name: str) -> str:
    """The spaCy model's package version (or its registry mirror's)."""
    for package in (name, *SPACY_MODEL_MIRRORS.get(name, ())):
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
