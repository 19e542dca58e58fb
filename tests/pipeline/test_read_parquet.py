"""Parquet inputs: an image column (bytes, or HF datasets' {bytes, path} struct) and a text column as the
sidecar caption; every row accounted for, listed, cut into parts and read without Ray."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pixcap.pipeline.inputs import list_sources
from pixcap.pipeline.parts import make_parts, record_sources
from pixcap.schemas import batch as B
from pixcap.schemas.stages import DecodeConfig
from pixcap.stages.decode import DecodeStage
from pixcap.stages.read import ReadStage

from .tarfiles import jpeg_bytes


def parts_of(paths, shard_size=3):
    sources = list_sources([str(p) for p in paths])
    return sources, make_parts(sources, record_sources(sources, [], "out"), shard_size)


def read_all(parts, shard_size=3, read_captions=True, skip=()):
    rows = []
    for part in parts:
        part[B.PART_SKIP] = list(skip)
        batches = ReadStage(shard_size, read_captions)({k: [v] for k, v in part.items()})
        for batch in batches:
            rows += [{k: batch[k][i] for k in batch} for i in range(len(batch[B.KEY]))]
    return rows


def test_n_rows_one_corrupt_give_n_minus_one_samples_and_one_reject(tmp_path):
    images = [jpeg_bytes(i) for i in range(5)]
    images[2] = b"\xff\xd8\xff\xe0 not really a jpeg"  # corrupt
    texts = [f"a photo number {i}" for i in range(5)]
    pq.write_table(pa.table({"image": images, "text": texts}), tmp_path / "laion.parquet", row_group_size=2)
    sources, parts = parts_of([tmp_path / "laion.parquet"])
    assert [s.kind for s in sources] == ["parquet"] and len(parts) == 1 and parts[0][B.PART_KIND] == "parquet"
    rows = read_all(parts)
    assert [r[B.KEY] for r in rows] == [f"laion/{i:09d}" for i in range(5)]
    assert [r[B.SIDECAR_CAPTION] for r in rows] == texts and not any(r[B.REJECT_REASON] for r in rows)
    assert [r[B.SHARD_COUNT] for r in rows] == [-1, -1, 3, -1, 2] and rows[-1][B.PART_END]
    decoded = DecodeStage(DecodeConfig(min_side=8))({k: [r[k] for r in rows] for k in rows[0]})
    reasons = list(decoded[B.REJECT_REASON])
    assert reasons.count("") == 4 and reasons[2] in ("decode_error", "not_an_image")


def test_hf_image_structs_nulls_and_empty_bytes_are_each_accounted_for(tmp_path):
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    images = pa.array([{"bytes": jpeg_bytes(0), "path": "a.jpg"}, None, {"bytes": b"", "path": "c.jpg"},
                       {"bytes": None, "path": "d.jpg"}], type=struct)
    pq.write_table(pa.table({"image": images, "caption": ["one", "two", "three", "four"]}), tmp_path / "hf.parquet")
    rows = read_all(parts_of([tmp_path / "hf.parquet"])[1], read_captions=False)
    assert [r[B.REJECT_REASON] for r in rows] == ["", "no_image", "empty_file", "no_image"]
    assert rows[0][B.DATA] == jpeg_bytes(0) and rows[0][B.SIDECAR_CAPTION] == ""  # captions not asked for


def test_a_file_without_an_image_column_or_unreadable_is_one_reject_row(tmp_path):
    pq.write_table(pa.table({"url": ["http://x"], "text": ["t"]}), tmp_path / "urls.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    rows = read_all(parts_of([tmp_path / "urls.parquet", tmp_path / "broken.parquet"])[1])
    assert [(r[B.KEY], r[B.REJECT_REASON]) for r in rows] == [("", "read_error"), ("", "read_error")]
    assert "no image column" in rows[1][B.REJECT_ERROR] or "no image column" in rows[0][B.REJECT_ERROR]


def test_rows_already_done_are_skipped_and_keep_their_positions(tmp_path):
    pq.write_table(pa.table({"jpg": [jpeg_bytes(i) for i in range(4)]}), tmp_path / "p.parquet")
    rows = read_all(parts_of([tmp_path / "p.parquet"])[1], shard_size=2, skip=(0, 1))
    assert [(r[B.KEY], r[B.SHARD], r[B.INDEX]) for r in rows] == [("p/000000002", "p-00001", 0), ("p/000000003", "p-00001", 1)]


@pytest.mark.parametrize("identity", ["stat", "sha256"])
def test_a_parquet_input_has_an_identity_that_changes_with_its_bytes(tmp_path, identity):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"image": [jpeg_bytes(0)]}), path)
    first = list_sources([str(path)], by=identity)[0].identity
    pq.write_table(pa.table({"image": [jpeg_bytes(1), jpeg_bytes(2)]}), path)
    assert list_sources([str(path)], by=identity)[0].identity != first


@pytest.mark.slow
def test_pixcap_run_on_a_parquet_input_writes_n_minus_one_and_rejects_one(tmp_path, ray_session, models_cache):
    """The whole run on a parquet input of 5 rows (image bytes and alt-text), 1 of them corrupt: 4 samples
    and 1 reject row naming it; verify passes."""
    import io

    import duckdb

    from pixcap.output.verify import verify_output
    from pixcap.pipeline.run import run_job

    from .test_end_to_end import job_for

    images = [jpeg_bytes(i) for i in range(5)]
    images[2] = b"\xff\xd8\xff\xe0 not really a jpeg"
    texts = [f"a photo number {i}" for i in range(5)]
    pq.write_table(pa.table({"image": images, "text": texts}), tmp_path / "laion.parquet", row_group_size=2)
    out = tmp_path / "out"
    manifest = run_job(job_for(None, out, models_cache, inputs=[str(tmp_path / "laion.parquet")], shard_size=2),
                       stream=io.StringIO())
    assert (manifest["totals"]["written"], manifest["totals"]["rejected"]) == (4, 1)
    written = duckdb.sql(f"select key from '{out}/stats/*.parquet' order by key").fetchall()
    assert written == [(f"laion/{i:09d}",) for i in (0, 1, 3, 4)]
    rejects = duckdb.sql(f"select key, stage, reason from '{out}/rejects/*.parquet'").fetchall()
    assert rejects == [("laion/000000002", "decode", rejects[0][2])] and rejects[0][2] in ("decode_error",
                                                                                             "not_an_image")
    assert verify_output(str(out)) == []
