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

from pixcap.schemas.manifest import REJECTS_DIR, SHARDS_DIR, STATS_DIR, WORK_DIR
from pixcap.stages.write import FRAGMENTS, LEDGER_COLUMNS, TMP_SUFFIX, read_ledger

PARTS = "parts"


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
        for directory in (SHARDS_DIR, STATS_DIR, REJECTS_DIR, os.path.join(WORK_DIR, FRAGMENTS), os.path.join(WORK_DIR, PARTS)):
            os.makedirs(os.path.join(out_dir, directory), exist_ok=True)
        # Read once; this run's commits are added as they happen (one run per output: the lock).
        self.committed_shards = {
            os.path.basename(p)[: -len(".parquet")] for p in glob.glob(os.path.join(out_dir, STATS_DIR, "*.parquet"))
        }

    # -- what is on disk -------------------------------------------------------------------
    def committed(self) -> set:
        return self.committed_shards

    def done_parts(self) -> set:
        return {os.path.basename(p)[: -len(".done")] for p in glob.glob(os.path.join(self.work, PARTS, "*.done"))}

    def clean_uncommitted(self) -> list:
        """Remove what a killed run left half-written: temp files, and tars or rejects whose stats
        parquet (the commit point) never landed."""
        removed = glob.glob(os.path.join(self.out, "*", f"*{TMP_SUFFIX}")) + glob.glob(
            os.path.join(self.work, FRAGMENTS, f"*{TMP_SUFFIX}")
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
        for fragment in sorted(glob.glob(os.path.join(self.work, FRAGMENTS, "*.parquet"))):
            self.add(fragment, read_ledger(fragment).to_pydict())

    # -- what is in flight -----------------------------------------------------------------
    def add(self, fragment: str, rows: dict) -> None:
        """Record rows that reached a fragment."""
        committed = self.committed_shards
        for shard, index, count, part_end, part_id in zip(*(rows[c] for c in LEDGER_COLUMNS)):
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

    def skip_list(self, part_shards: list) -> list:
        """PART_SKIP entries for a part: committed shards whole, and finished inputs one by one."""
        committed = self.committed_shards
        skip = []
        for shard in part_shards:
            if shard in committed:
                skip.append(shard)
            elif shard in self.shards:
                skip += [f"{shard}/{i}" for i in sorted(self.shards[shard].indices)]
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
                open(os.path.join(self.work, PARTS, f"{part_id}.done"), "w").close()
                del self.part_ends[part_id]
