"""The report's provenance section: which models, revisions and settings made each output, from
its manifest.json (read through fsspec, so an output on S3 shows it too)."""
from __future__ import annotations

import json
from typing import List, Optional

import fsspec

from pixcap.output import layout
from pixcap.schemas.manifest import MANIFEST_NAME

from .markup import Cell, esc, note, section, table
from .summary import OutputSummary

SHOWN_SETTINGS = 400  # a fingerprint is a few dozen settings; a crafted one is not a flood


def read_manifest(path: str) -> Optional[dict]:
    """The output's manifest, or None where it has none or it is no JSON object."""
    try:
        with fsspec.open(layout.under(path, MANIFEST_NAME), "rb") as f:
            manifest = json.loads(f.read())
    except (FileNotFoundError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _models_table(label: str, models: dict) -> str:
    rows = []
    for stage, entry in models.items():
        entry = entry if isinstance(entry, dict) else {"name": entry}
        named = " ".join(f"{key}={value}" for key, value in entry.items() if key not in ("resolved", "revision") and value)
        rows.append([Cell(stage, text_cell=True), Cell(named, text_cell=True), Cell(str(entry.get("revision", "")), text_cell=True)])
    return f"<h3>{esc(label)}: models</h3>" + table(["stage", "model", "revision"], rows)


def _settings_table(label: str, manifest: dict) -> str:
    fingerprint = manifest.get("fingerprint") or {}
    rows = [[Cell(str(key), text_cell=True), Cell(json.dumps(value, ensure_ascii=False), text_cell=True)]
            for key, value in list(fingerprint.items())[:SHOWN_SETTINGS] if not str(key).startswith("revision.")]
    versions = manifest.get("versions") or {}
    runs = manifest.get("runs") or []
    last = runs[-1] if runs else {}
    made = (f"pixcap {versions.get('pixcap', '?')}; {len(runs)} run(s), the last {last.get('status', '?')} "
            f"at {last.get('ended') or last.get('started', '?')}")
    return (f"<h3>{esc(label)}: settings that shape the content (its fingerprint)</h3>" + note(made)
            + "<details><summary>show the settings</summary>" + table(["setting", "value"], rows) + "</details>")


def provenance_section(summaries: List[OutputSummary]) -> str:
    parts = []
    for s in summaries:
        manifest = read_manifest(s.path)
        if manifest is None:
            parts.append(note(f"{s.label}: no manifest.json, so no record of its models and settings"))
            continue
        parts.append(_models_table(s.label, manifest.get("models") or {}))
        parts.append(_settings_table(s.label, manifest))
    return section("provenance", "Models and settings", *parts)
