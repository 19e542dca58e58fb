"""The resume ledger: which inputs are done, which shards are complete, what to clean up.

State lives in the output only, so a run killed at any point is continued by running it again:
committed shards are the stats parquets (the commit point); inputs finished but not committed
are rows of fragments under _work/fragments, their images in _work/blobs; a part whose shards are all committed has a marker
under _work/parts and is not even opened again. Only shards of this output's own inputs (their
prefixes are in the manifest) count, and only files pixcap can prove it wrote are removed.
"""
from __future__ import annotations

import io
import posixpath
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from pixcap.schemas import batch as B
from pixcap.schemas.manifest import TMP_SUFFIX
from pixcap.schemas.shards import parse_shard_name

from . import layout
from .layout import FRAGMENTS, PARTS
from .storage import Storage


def read_ledger(storage: Storage, fragment: str) -> dict:
    """The ledger columns of a fragment, without its image bytes."""
    with storage.open(fragment) as f:
        return pq.read_table(io.BytesIO(f.read()), columns=B.LEDGER_COLUMNS).to_pydict()


@dataclass
class ShardState:
    count: int = -1  # inputs in the shard, known once its last row is seen
    indices: set = field(default_factory=set)
    fragments: set = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return self.count >= 0 and len(self.indices) >= self.count


class Ledger:
    def __init__(self, storage: Storage, prefixes: set):
        self.storage = storage
        self.prefixes = set(prefixes)  # shard prefixes of this output's inputs
        self.shards = defaultdict(ShardState)  # uncommitted shards with rows in fragments
        self.part_ends = {}  # part_id -> its last shard
        self.part_shards = defaultdict(set)  # part_id -> shards seen
        self.fragment_shards = defaultdict(set)  # fragment -> its uncommitted shards
        self.parts_finished = 0  # parts this run marked done
        for directory in (layout.SHARDS, layout.STATS, layout.REJECTS, FRAGMENTS, PARTS):
            storage.makedirs(directory)
        # Read once; this run's commits are added as they happen (one run per output: the lock).
        self.committed_shards = self._own("stats")

    def _own(self, kind: str) -> set:
        """Shards with a file of this kind in the output that belong to this output's inputs."""
        names = set()
        for shard in layout.shard_names(self.storage.listdir(layout.SHARD_FILE_KINDS[kind][0]), kind):
            parsed = parse_shard_name(shard)
            if parsed is not None and parsed[0] in self.prefixes:
                names.add(shard)
        return names

    # -- what is in the output ------------------------------------------------------------
    def committed(self) -> set:
        return self.committed_shards

    def done_parts(self) -> set:
        return {part for part in map(layout.part_of_marker, self.storage.listdir(PARTS)) if part is not None}

    def clean_uncommitted(self) -> list:
        """Remove what a killed run left half-written: pixcap's own temporary files, and tars or
        rejects of this output's shards whose stats parquet (the commit point) never landed.
        Nothing else is touched: not a file pixcap did not name, nor one outside its folders."""
        removed = []
        for directory in layout.OWN_FOLDERS:
            removed += [posixpath.join(directory, name) for name in self.storage.listdir(directory) if name.endswith(TMP_SUFFIX)]
        for kind in ("tar", "embeddings", "rejects"):
            removed += [layout.shard_file(kind, shard) for shard in sorted(self._own(kind) - self.committed_shards)]
        for path in removed:
            self.storage.remove(path)
        return removed + self.sweep_blobs()

    def sweep_blobs(self) -> list:
        """Remove the blobs of committed shards, which a run stopped before its commit removed
        them; returns their folders."""
        folders = [layout.shard_blobs(shard) for shard in self.storage.folders(layout.BLOBS) if shard in self.committed_shards]
        for folder in folders:
            self.storage.remove_tree(folder)
        return folders

    def load_fragments(self) -> None:
        """Take up the rows a previous run finished but did not commit."""
        for name in self.storage.listdir(FRAGMENTS):
            if name.endswith(".parquet"):
                fragment = f"{FRAGMENTS}/{name}"
                self.add(fragment, read_ledger(self.storage, fragment))

    # -- what is in flight ----------------------------------------------------------------
    def add(self, fragment: str, rows: dict) -> None:
        """Record rows that reached a fragment."""
        committed = self.committed_shards
        for shard, index, count, part_end, part_id in zip(*(rows[c] for c in B.LEDGER_COLUMNS)):
            self.part_shards[part_id].add(shard)
            if part_end:
                self.part_ends[part_id] = shard
            if shard in committed:
                continue
            state = self.shards[shard]
            state.indices.add(int(index))
            state.fragments.add(fragment)
            if count >= 0:
                state.count = int(count)
            self.fragment_shards[fragment].add(shard)
        if not self.fragment_shards.get(fragment):
            self.fragment_shards.pop(fragment, None)
            self.storage.remove(fragment)  # every row in it was committed before

    def shards_of(self, prefix: str) -> dict:
        """{number: shard} of the committed and in-flight shards named with this part prefix."""
        found = {}
        for shard in self.committed_shards | set(self.shards):
            parsed = parse_shard_name(shard)
            if parsed is not None and parsed[0] == prefix:
                found[parsed[1]] = shard
        return found

    def skip_positions(self, prefix: str, first_shard: int, shard_count, shard_size: int) -> list:
        """Positions in a part (0-based) of the inputs already done: every input of a committed
        shard, and one by one those of an uncommitted shard that reached fragments. The part's
        shards are numbered first_shard .. first_shard + shard_count - 1 (shard_count None: any)."""
        skip = []
        for number, shard in sorted(self.shards_of(prefix).items()):
            offset = number - first_shard
            if offset < 0 or (shard_count is not None and offset >= shard_count):
                continue
            base = offset * shard_size
            if shard in self.committed_shards:
                skip += range(base, base + shard_size)
            else:
                skip += [base + i for i in sorted(self.shards[shard].indices)]
        return skip

    def complete_shards(self) -> list:
        return sorted(s for s, state in self.shards.items() if state.complete)

    def committed_shard(self, shard: str) -> None:
        """Forget a committed shard; delete fragments that hold nothing uncommitted any more;
        mark parts whose shards are now all committed."""
        state = self.shards.pop(shard)
        self.committed_shards.add(shard)
        for fragment in state.fragments:
            pending = self.fragment_shards.get(fragment)
            if pending is None:
                continue
            pending.discard(shard)
            if not pending:
                del self.fragment_shards[fragment]
                self.storage.remove(fragment)
        self.mark_finished_parts()

    def mark_finished_parts(self) -> None:
        committed = self.committed_shards
        for part_id, end in list(self.part_ends.items()):
            if all(s in committed for s in self.part_shards[part_id]) and end in committed:
                self.storage.write_bytes(layout.part_marker(part_id), b"")
                del self.part_ends[part_id]
                self.parts_finished += 1
