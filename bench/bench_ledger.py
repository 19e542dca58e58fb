"""How many inputs per second one driver's ledger keeps up with (issue 11's 10,000/s goal).

The driver receives only ledger columns for every finished input (shard, index, shard count,
part end, part id, fragment path); this feeds it synthetic rows as a cluster of write tasks
would, in fragments of WRITE_BATCH rows, marks complete shards committed, and prints the rate.
It also prints the bytes per input that reach the driver, against the stored image's size.
"""
from __future__ import annotations

import argparse
import pickle
import tempfile
import time

from pixcap.output.ledger import Ledger
from pixcap.output.storage import Storage
from pixcap.schemas import batch as B
from pixcap.schemas.shards import shard_name

WRITE_BATCH = 8


def synthetic_fragments(inputs: int, shard_size: int, parts: int):
    """Ledger rows as write tasks return them, part by part, shard by shard, in fragments."""
    per_part = inputs // parts
    for p in range(parts):
        prefix = f"sa_{p:06d}"
        rows = []
        for position in range(per_part):
            shard, index = shard_name(prefix, position // shard_size), position % shard_size
            last_in_shard = index == shard_size - 1 or position == per_part - 1
            rows.append((shard, index, index + 1 if last_in_shard else -1, position == per_part - 1, prefix))
            if len(rows) == WRITE_BATCH:
                yield rows
                rows = []
        if rows:
            yield rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--parts", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        storage = Storage(out)
        ledger = Ledger(storage, {f"sa_{p:06d}" for p in range(args.parts)})
        fed = 0
        start = time.perf_counter()
        for n, rows in enumerate(synthetic_fragments(args.inputs, args.shard_size, args.parts)):
            columns = {column: [row[i] for row in rows] for i, column in enumerate(B.LEDGER_COLUMNS)}
            ledger.add(f"_work/fragments/{n:08d}.parquet", columns)
            fed += len(rows)
            for shard in ledger.complete_shards():
                ledger.committed_shard(shard)  # what the driver does when a commit task returns
        elapsed = time.perf_counter() - start
        summary = {**columns, B.FRAGMENT: [f"_work/fragments/{n:08d}.parquet"] * len(rows)}
        per_input = len(pickle.dumps(summary)) / len(rows)
    print(f"ledger: {fed:,} inputs in {elapsed:.2f} s = {fed / elapsed:,.0f} inputs/s on one driver "
          f"(goal 10,000/s: 1,000 GPUs at 10 images/s); {len(ledger.committed()):,} shards committed, "
          f"{ledger.parts_finished} parts done")
    print(f"driver traffic: about {per_input:.0f} bytes per input (pickled ledger columns; the image stays in fragments)")


if __name__ == "__main__":
    main()
