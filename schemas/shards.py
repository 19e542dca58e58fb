"""Shard names: PREFIX-NNNNN, the one format that names a shard's tar, stats and rejects."""
from __future__ import annotations

import typing

NUMBER_DIGITS = 5


def shard_name(prefix: str, number: int) -> str:
    """The name of shard `number` of the part (or folder) with this prefix."""
    return f"{prefix}-{number:0{NUMBER_DIGITS}d}"


def chunk_part_id(prefix: str, number: int) -> str:
    """The part id of a folder's chunk `number`; the dot keeps it apart from every tar's prefix
    (a prefix is sanitised to [A-Za-z0-9_-]), so `photos-00000.tar` never shares an id with it."""
    return f"{prefix}.{number:0{NUMBER_DIGITS}d}"


def parse_shard_name(name: str) -> typing.Optional[typing.Tuple[str, int]]:
    """(prefix, number) of a shard name, or None for a name that is no shard's."""
    prefix, sep, number = name.rpartition("-")
    if not sep or not prefix or len(number) < NUMBER_DIGITS or not number.isdigit():
        return None
    return prefix, int(number)
