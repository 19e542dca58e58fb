"""The resume ledger (output/ledger.py), without Ray: what a killed run left is cleaned, its
fragments resumed, and files pixcap did not name are kept."""
from pixcap.output.blobs import BlobWriter
from pixcap.output.layout import blob as blob_path, shard_blobs
from pixcap.output.commit import commit_shard
from pixcap.output.fragments import FragmentWriter
from pixcap.output.ledger import Ledger
from pixcap.output.storage import Storage
from pixcap.schemas.manifest import TMP_SUFFIX

from .batches import finished_batch


def test_ledger_cleans_half_written_output_and_resumes_fragments(tmp_path):
    out = str(tmp_path)
    Ledger(Storage(out), {"p"})
    writer = FragmentWriter(Storage(out))
    writer(finished_batch("p-00000", [0, 1], count=3))
    # A run killed between a shard's tar and its parquet, and one killed mid-write.
    (tmp_path / "shards" / "p-00001.tar").write_bytes(b"half")
    (tmp_path / "rejects" / "p-00001.parquet").write_bytes(b"half")
    (tmp_path / "stats" / f"p-00002.parquet.1234abcd{TMP_SUFFIX}").write_bytes(b"half")
    # Files pixcap did not name: another dataset's shards, an audit table, a user's notes.
    (tmp_path / "shards" / "my-own-dataset-000.tar").write_bytes(b"mine")
    (tmp_path / "shards" / "other-00001.tar").write_bytes(b"not an input of this output")
    (tmp_path / "rejects" / "audit.parquet").write_bytes(b"mine")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "draft.tmp").write_bytes(b"mine")
    ledger = Ledger(Storage(out), {"p"})
    removed = sorted(ledger.clean_uncommitted())
    assert removed == ["rejects/p-00001.parquet", "shards/p-00001.tar", f"stats/p-00002.parquet.1234abcd{TMP_SUFFIX}"]
    for kept in ("shards/my-own-dataset-000.tar", "shards/other-00001.tar", "rejects/audit.parquet", "notes/draft.tmp"):
        assert (tmp_path / kept).read_bytes() in (b"mine", b"not an input of this output"), kept
    ledger.load_fragments()
    assert ledger.complete_shards() == []
    assert ledger.skip_positions("p", 0, None, shard_size=3) == [0, 1]
    assert (tmp_path / blob_path("p-00000", 1)).exists()  # uncommitted: the next commit reads it

def test_the_blobs_of_a_committed_shard_left_by_a_killed_commit_are_swept(tmp_path):
    out = str(tmp_path)
    storage = Storage(out)
    Ledger(storage, {"p"})
    fragment = FragmentWriter(storage)(finished_batch("p-00000", [0, 1], count=2))["fragment"][0]
    commit_shard(storage, "p-00000", [fragment])
    # Killed after the stats (the commit point), before the blobs went; another output's blobs.
    BlobWriter(storage)(finished_batch("p-00000", [0, 1], count=2))
    BlobWriter(storage)(finished_batch("other-00000", [0], count=1))
    removed = Ledger(storage, {"p"}).clean_uncommitted()
    assert removed == [shard_blobs("p-00000")]
    assert not (tmp_path / shard_blobs("p-00000")).exists() and (tmp_path / blob_path("other-00000", 0)).exists()
