"""Small hand-made outputs for the report tests: stats, rejects and shards in the writer's layout,
with every figure known in advance (no pipeline run, so these tests are fast)."""
from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from pixcap.schemas.manifest import REJECTS_DIR, SHARDS_DIR, STATS_DIR
from pixcap.schemas.records import CAPTION_EXT, IMAGE_EXT, RECORD_EXT, SAMPLE_SCHEMA
from pixcap.schemas.rejects import REJECT_SCHEMA

from tests.pipeline.tarfiles import jpeg_bytes, write_tar


def sample(key: str, shard: str, nouns, clip_score, width=640, height=480, caption=None, grounded=()) -> dict:
    row = {name: None for name in SAMPLE_SCHEMA.names}
    row.update(key=key, shard=shard, source=f"x.tar::{key}.jpg", sha256="0" * 64, format="jpeg",
               width=width, height=height, orig_width=width, orig_height=height, passthrough=True,
               caption=caption if caption is not None else "a photo of " + " and ".join(nouns),
               caption_model="m", nouns=list(nouns), n_nouns=len(nouns), clip_score=clip_score,
               grounded_nouns=list(grounded), n_grounded=len(grounded), clip_model="c")
    return row


def reject(shard: str, key: str, stage: str, reason: str) -> dict:
    return {"source": f"x.tar::{key}.jpg", "key": key, "shard": shard, "stage": stage, "reason": reason, "error": "e"}


def write_output(out, shards: dict, rejects: dict = None, tars: bool = True) -> None:
    """shards: name -> sample rows; rejects: name -> reject rows. Tars hold small seeded JPEGs."""
    for folder in (STATS_DIR, SHARDS_DIR, REJECTS_DIR):
        os.makedirs(os.path.join(out, folder), exist_ok=True)
    for name, rows in shards.items():
        pq.write_table(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA), os.path.join(out, STATS_DIR, f"{name}.parquet"))
        if tars:
            members = []
            for i, row in enumerate(rows):
                members += [(f"{row['key']}.{IMAGE_EXT}", jpeg_bytes(i, size=(96, 72))),
                            (f"{row['key']}.{CAPTION_EXT}", row["caption"].encode()),
                            (f"{row['key']}.{RECORD_EXT}", json.dumps(row).encode())]
            write_tar(os.path.join(out, SHARDS_DIR, f"{name}.tar"), members)
    for name, rows in (rejects or {}).items():
        pq.write_table(pa.Table.from_pylist(rows, schema=REJECT_SCHEMA), os.path.join(out, REJECTS_DIR, f"{name}.parquet"))


def small_output(out, scale: int = 1) -> None:
    """Two shards of dogs, cats and kites with CLIP scores 0.10 .. 0.29, and three rejects in one."""
    rows = [sample(f"p/s_{i}", "p-00000" if i < 10 else "p-00001",
                   ["dog"] * (1 + i % 3) + ["cat"] * (i % 2) + (["kite"] if i % 7 == 0 else []),
                   0.10 + 0.01 * i * scale, width=400 + 40 * i, height=300 + 20 * i, grounded=["dog"] * (i % 2))
            for i in range(20)]
    rows[3]["clip_score"] = None  # a sample CLIP could not score still counts as an image
    write_output(out, {"p-00000": rows[:10], "p-00001": rows[10:]},
                 {"p-00000": [reject("p-00000", "p/bad_1", "decode", "decode_error"),
                              reject("p-00000", "p/bad_2", "decode", "decode_error"),
                              reject("p-00000", "p/empty", "decode", "empty_file")]})
