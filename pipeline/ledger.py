"""The resume ledger: which inputs are done, which shards are complete, what to clean up.

State lives in the output folder only, so a run killed at any point is continued by running it
again: committed shards are the stats parquets; inputs finished but not yet committed are rows of
fragments under _work/fragments; a part whose shards are all committed has a marker under
_work/parts and is not even opened again.
"""
from __future__ import annotations

import glob
import os
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from pixcap.schemas import batch as B
from pixcap.schemas.manifest import FRAGMENTS_DIR, PARTS_DIR, REJECTS_DIR, SHARDS_DIR, STATS_DIR, TMP_SUFFIX, WORK_DIR
from pixcap.schemas.shards import parse_shard_name


def read_ledger(fragment: str) -> dict:
    """The ledger columns of a fragment, without its image bytes."""
    return pq.read_table(fragment, columns=B.LEDGER_COLUMNS).to_pydict()


@dataclass
class ShardState:
    count: int = -1  # inputs in the shard, known once its last row is seen
    indices: set = field(default_factory=set)
    fragments: set = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return self.count >= 0 and len(self.indices) >= self.count


class Ledger:
    def __init__(self, out_dir: str):
        self.out = out_dir
        self.work = os.path.join(out_dir, WORK_DIR)
        self.shards = defaultdict(ShardState)  # uncommitted shards with rows in fragments
        self.part_ends = {}  # part_id -> its last shard
        self.part_shards = defaultdict(set)  # part_id -> shards seen
        self.fragment_shards = defaultdict(set)  # fragment -> its uncommitted shards
        for directory in (SHARDS_DIR, STATS_DIR, REJECTS_DIR, os.path.join(WORK_DIR, FRAGMENTS_DIR), os.path.join(WORK_DIR, PARTS_DIR)):
            os.makedirs(os.path.join(out_dir, directory), exist_ok=True)
        # Read once; this run's commits are added as they happen (one run per output: the lock).
        self.committed_shards = {
            os.path.basename(p)[: -len(".parquet")] for p in glob.glob(os.path.join(out_dir, STATS_DIR, "*.parquet"))
        }

    # -- what is on disk -------------------------------------------------------------------
    def committed(self) -> set:
        return self.committed_shards

    def done_parts(self) -> set:
        return {os.path.basename(p)[: -len(".done")] for p in glob.glob(os.path.join(self.work, PARTS_DIR, "*.done"))}

    def clean_uncommitted(self) -> list:
        """Remove what a killed run left half-written: temp files, and tars or rejects whose stats
        parquet (the commit point) never landed."""
        removed = glob.glob(os.path.join(self.out, "*", f"*{TMP_SUFFIX}")) + glob.glob(
            os.path.join(self.work, FRAGMENTS_DIR, f"*{TMP_SUFFIX}")
        )
        committed = self.committed()
        for directory, suffix in ((SHARDS_DIR, ".tar"), (REJECTS_DIR, ".parquet")):
            for path in glob.glob(os.path.join(self.out, directory, f"*{suffix}")):
                if os.path.basename(path)[: -len(suffix)] not in committed:
                    removed.append(path)
        for path in removed:
            os.remove(path)
        return removed

    def load_fragments(self) -> None:
        """Take up the rows a previous run finished but did not commit."""
        for fragment in sorted(glob.glob(os.path.join(self.work, FRAGMENTS_DIR, "*.parquet"))):
            self.add(fragment, read_ledger(fragment))

    # -- what is in flight -----------------------------------------------------------------
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
            os.remove(fragment)  # every row in it was committed before

    def shards_of(self, prefix: str) -> dict:
        """{number: shard} of the committed and in-flight shards named with this part prefix."""
        found = {}
        for shard in self.committed_shards | set(self.shards):
            parsed = parse_shard_name(shard)
            if parsed is not None and parsed[0] == prefix:
                found[parsed[1]] = shard
        return found

    def skip_positions(self, prefix: str, first_shard: int, shard_count: int, shard_size: int) -> list:
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
                if os.path.exists(fragment):
                    os.remove(fragment)
        self.mark_finished_parts()

    def mark_finished_parts(self) -> None:
        committed = self.committed_shards
        for part_id, end in list(self.part_ends.items()):
            if all(s in committed for s in self.part_shards[part_id]) and end in committed:
                open(os.path.join(self.work, PARTS_DIR, f"{part_id}.done"), "w").close()
                del self.part_ends[part_id]
