"""Parts: the units the read stage takes (a tar, or shard_size files of a folder), named once.

An output folder records every input it was made from (manifest "inputs": URI, kind, identity,
shard prefix). A listed input is matched against that record by its full URI (or, for a local
path, by where it leads once links are resolved): the same input with
the same identity keeps its prefix (so its done parts are skipped and its keys stay the same);
the same URI with other content is refused; a new URI gets a prefix no other input of the
output has, so two inputs with the same base name never share keys or shards.
"""
from __future__ import annotations

import os

from pixcap.schemas import JobError
from pixcap.schemas import batch as B
from pixcap.schemas.shards import chunk_part_id
from pixcap.stages.keys import KeyMaker, UniqueNames, sanitise

from .inputs import STAT, Source


class InputChanged(JobError):
    """An input whose content differs from what the output was made from (exit code 2)."""


def _changes(recorded: dict, listed: dict) -> str:
    keys = sorted(set(recorded) | set(listed))
    return ", ".join(f"{k} {recorded.get(k)!r} -> {listed.get(k)!r}" for k in keys if recorded.get(k) != listed.get(k))


def _place(uri: str, kind: str) -> str:
    """Where an input's URI leads now: a local path with its links resolved, so a link to an input
    the output was made from (or another spelling of its path) is known as that input."""
    if "://" in uri:
        return uri
    path, mark, names = uri.rpartition("#") if kind == "files" else (uri, "", "")
    return os.path.realpath(path) + mark + names


def identified_by(identity: dict) -> str:
    """How an input's recorded identity was made (inputs.py): sha256 says so; stat is the rest."""
    return identity.get("by", STAT)


def record_sources(sources: list, recorded: list, output: str) -> list:
    """The input records for the listed sources: recorded ones as they were, new ones with a
    fresh prefix. Raises InputChanged naming every input whose content changed."""
    by_uri = {entry["uri"]: entry for entry in recorded}
    by_place = {_place(entry["uri"], entry["kind"]): entry for entry in recorded}
    prefixes = UniqueNames()  # a new input's prefix is its base name, hashed with its URI when taken
    prefixes.taken.update(entry["prefix"] for entry in recorded)
    records, changed = [], []
    for source in sources:
        entry = by_uri.get(source.uri) or by_place.get(_place(source.uri, source.kind))
        if entry is None:
            entry = {"uri": source.uri, "kind": source.kind, "identity": source.identity,
                     "prefix": prefixes.claim(sanitise(source.name).replace("/", "_"), source.uri)}
        elif identified_by(entry["identity"]) != identified_by(source.identity):
            raise InputChanged(
                f"input_identity: {output} identified {entry['uri']} by {identified_by(entry['identity'])} when it "
                f"was made from it, and this job asks for {identified_by(source.identity)}; set input_identity: "
                f"{identified_by(entry['identity'])} to continue it, or write to a new output")
        elif entry["identity"] != source.identity:
            changed.append(f"{source.uri} ({_changes(entry['identity'], source.identity)})")
        records.append(entry)
    if changed:
        raise InputChanged(
            f"{len(changed)} input(s) changed since {output} was made from them: {'; '.join(changed[:3])}; "
            "an output holds one version of each input: restore it, or write to a new output"
        )
    return records


def make_parts(sources: list, records: list, shard_size: int) -> list:
    """Rows for the read stage (PART_SKIP still empty), in listing order."""
    parts = []
    for source, record in zip(sources, records):
        prefix = record["prefix"]
        if source.kind in ("tar", "parquet"):  # one part, read as a stream
            parts.append(_part(prefix, source, prefix, 0, [], [], [], source.identity["size"]))
            continue
        keys = KeyMaker(prefix)
        members = [(url, keys.make(relative), "", size) for url, relative, size in source.files]
        members += [(url, keys.make(url), error, 0) for url, error in source.listing_errors]
        for chunk, start in enumerate(range(0, len(members), shard_size)):
            urls, chunk_keys, errors, sizes = zip(*members[start:start + shard_size])
            parts.append(_part(chunk_part_id(prefix, chunk), source, prefix, chunk, list(urls), list(chunk_keys),
                               list(errors), sum(sizes)))
    return parts


def _part(part_id: str, source: Source, prefix: str, first_shard: int, members: list, keys: list, errors: list,
          size: int) -> dict:
    return {
        B.PART_BYTES: size,
        B.PART_ID: part_id,
        B.PART_KIND: source.kind if source.kind in ("tar", "parquet") else "files",
        B.PART_URI: source.url,
        B.PART_ROOT: source.root,
        B.PART_SHARD_PREFIX: prefix,
        B.PART_FIRST_SHARD: first_shard,
        B.PART_KEY_PREFIX: prefix,
        B.PART_MEMBERS: members,
        B.PART_KEYS: keys,
        B.PART_MEMBER_ERRORS: errors,
        B.PART_CAPTIONS: source.captions,
        B.PART_SKIP: [],
    }
