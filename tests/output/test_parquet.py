"""Parquet files with no rows (the rejects of a clean shard, the stats of a fully rejected one) are
read by every reader users pick: HF datasets, DuckDB, polars, pandas, pyarrow and Ray."""
import glob

import duckdb
import pandas
import polars
import pyarrow.parquet as pq
import pytest

from pixcap.output.commit import commit_shard
from pixcap.output.fragments import FragmentWriter
from pixcap.output.storage import Storage
from pixcap.schemas.manifest import SHARD_META_REJECTED
from tests.output.batches import finished_batch


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    """Two committed shards: p-00000 all rejected (stats: no rows), p-00001 clean (rejects: no rows)."""
    storage = Storage(str(tmp_path_factory.mktemp("parquet") / "out"))
    for shard, rejected in (("p-00000", {0, 1}), ("p-00001", set())):
        summary = FragmentWriter(storage)(finished_batch(shard, [0, 1], count=2, rejected=rejected, part_end=True))
        commit_shard(storage, shard, [summary["fragment"][0]])
    return storage.root


def readers(tmp_path):
    """{reader: function(files) -> rows read}."""
    import datasets

    datasets.disable_progress_bars()
    return {
        "datasets": lambda files: len(datasets.load_dataset("parquet", data_files=files, split="train",
                                                            cache_dir=str(tmp_path / "hf"))),
        "duckdb": lambda files: duckdb.sql(f"select count(*) from read_parquet({files!r})").fetchall()[0][0],
        "polars": lambda files: polars.read_parquet(files).height,
        "pandas": lambda files: len(pandas.concat([pandas.read_parquet(f) for f in files])),
        "pyarrow": lambda files: pq.read_table(files).num_rows,
    }


@pytest.mark.parametrize("folder", ["stats", "rejects"])
def test_every_reader_reads_an_output_with_files_of_no_rows(output, folder, tmp_path):
    files = sorted(glob.glob(f"{output}/{folder}/*.parquet"))
    assert sorted(pq.ParquetFile(f).metadata.num_rows for f in files) == [0, 2]
    for name, read in readers(tmp_path).items():
        assert read(files) == 2, name


def test_a_file_of_no_rows_alone_is_no_rows_and_keeps_its_metadata(output, tmp_path):
    [empty] = [f for f in sorted(glob.glob(f"{output}/*/*.parquet")) if pq.ParquetFile(f).metadata.num_rows == 0][:1]
    for name, read in readers(tmp_path).items():
        if name == "datasets":  # a split of no rows at all is datasets' own refusal; streamed, it is empty
            import datasets

            assert sum(1 for _ in datasets.load_dataset("parquet", data_files=[empty], split="train", streaming=True)) == 0
            continue
        assert read([empty]) == 0, name
    stats = pq.ParquetFile(f"{output}/stats/p-00000.parquet")
    assert stats.metadata.num_row_groups == 0 and stats.schema_arrow.metadata[SHARD_META_REJECTED] == b"2"


def test_ray_reads_an_output_with_files_of_no_rows(output, ray_session):
    import ray

    # The stats only: the rejects' empty file is the same kind of file, and each Ray read costs seconds.
    assert ray.data.read_parquet(sorted(glob.glob(f"{output}/stats/*.parquet"))).count() == 2
