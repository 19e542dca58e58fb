"""Fragments on the output's storage: a worker writes one per batch of finished rows."""
from __future__ import annotations

import io
import uuid

import pyarrow.parquet as pq

from pixcap.schemas import batch as B
from pixcap.stages.write import fragment_table, ledger_summary

from .blobs import BlobWriter
from . import layout
from .storage import Storage


class FragmentWriter:
    """Writes one batch of finished rows as a fragment; returns the ledger columns of its rows."""

    def __init__(self, storage: Storage, schema=None):
        self.storage = storage
        self.schema = schema  # the fragment's schema (a job's record: fragment_schema); None: FRAGMENT_SCHEMA

    def __call__(self, batch: dict) -> dict:
        if len(batch[B.SHARD]) == 0:
            return {column: [] for column in B.LEDGER_COLUMNS + [B.FRAGMENT]}
        if B.STORED in batch:  # a caller without the graph, whose decode task stores them first
            batch = BlobWriter(self.storage)(batch)
        table = fragment_table(batch, self.schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        fragment = layout.fragment(uuid.uuid4().hex)
        self.storage.write_bytes(fragment, buffer.getvalue())
        return ledger_summary(table, fragment)
