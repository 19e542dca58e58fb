"""A manifest read back is checked against the rules pixcap writes it with, before it is used.

manifest.json lies in the output, where anyone may edit it, and its input prefixes, shard names
and file paths become the names pixcap writes and reads (a prefix edited to `../../evil` would
put `evil-00000.tar` two folders above the output). So each is checked with the functions that
made it: a prefix is a fixed point of the key sanitiser, a shard name parses and is rebuilt by
schemas/shards.py, and a shard's file paths are the ones output/layout.py gives its name. The
first value that fails is named in one line (exit code 2), and nothing is written.
"""
from __future__ import annotations

from pixcap.schemas import JobError
from pixcap.schemas.shards import parse_shard_name, shard_name
from pixcap.stages.keys import sanitise

from .layout import SHARD_FILE_KINDS, shard_file

INPUT_KINDS = ("tar", "folder", "files", "parquet")  # pipeline/inputs.py: Source.kind
QUOTE_CHARS = 60


class ManifestTampered(JobError):
    """A manifest holding a value pixcap never writes (exit code 2)."""


def valid_prefix(prefix) -> bool:
    """A shard prefix as parts.record_sources makes it: sanitised text with no '/' in it."""
    return isinstance(prefix, str) and bool(prefix) and sanitise(prefix).replace("/", "_") == prefix


def valid_shard_name(name) -> bool:
    parsed = parse_shard_name(name) if isinstance(name, str) else None
    return parsed is not None and valid_prefix(parsed[0]) and shard_name(*parsed) == name


class _Bad(Exception):
    """One value that breaks its rule: where it is, what it is, what it should be."""

    def __init__(self, where: str, value, rule: str):
        super().__init__(f"{where} is {_quoted(value)}, not {rule}")


def _quoted(value) -> str:
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…"


def _items(manifest: dict, key: str) -> list:
    value = manifest.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise _Bad(key, value, "a list of records")
    return value


def _check_inputs(manifest: dict) -> None:
    for i, entry in enumerate(_items(manifest, "inputs")):
        if not valid_prefix(entry.get("prefix")):
            raise _Bad(f"inputs[{i}].prefix", entry.get("prefix"), "a shard prefix pixcap makes ([A-Za-z0-9_-]+)")
        if not isinstance(entry.get("uri"), str):
            raise _Bad(f"inputs[{i}].uri", entry.get("uri"), "a URL")
        if entry.get("kind") not in INPUT_KINDS:
            raise _Bad(f"inputs[{i}].kind", entry.get("kind"), f"one of {', '.join(INPUT_KINDS)}")
        if not isinstance(entry.get("identity"), dict):
            raise _Bad(f"inputs[{i}].identity", entry.get("identity"), "a record")


def _check_shards(manifest: dict) -> None:
    for i, entry in enumerate(_items(manifest, "shards")):
        name = entry.get("name")
        if not valid_shard_name(name):
            raise _Bad(f"shards[{i}].name", name, "a shard name pixcap makes (PREFIX-NNNNN)")
        for kind in SHARD_FILE_KINDS:
            file = entry.get(kind)
            if file is None:
                continue
            if not isinstance(file, dict):
                raise _Bad(f"shards[{i}].{kind}", file, "a file record")
            if file.get("path") != shard_file(kind, name):
                raise _Bad(f"shards[{i}].{kind}.path", file.get("path"), f"{shard_file(kind, name)!r}")


def check_manifest(manifest: dict, where: str) -> None:
    """Raise ManifestTampered, naming the manifest (where) and the first bad value."""
    try:
        _check_inputs(manifest)
        _check_shards(manifest)
    except _Bad as e:
        raise ManifestTampered(f"{where}: {e}; pixcap never writes this, so the output cannot be trusted "
                               "(restore its manifest.json, or write to a new output)") from None
