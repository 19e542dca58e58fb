"""The whole pipeline through Ray: every input accounted for, and the output readable."""
import glob
import json
import os
import shutil

import duckdb
import pytest
import webdataset as wds

from pixcap.pipeline.run import run_job
from pixcap.analysis.stats import concept_density
from pixcap.schemas import REASONS, load_job
from pixcap.schemas.manifest import MANIFEST_KEYS

from tests.tiny_jobs import with_tiny_models

from .tarfiles import jpeg_bytes, sa1b_members, write_tar

pytestmark = pytest.mark.slow


def job_for(root, out, models_cache, **overrides):
    data = {
        "inputs": [str(root / "tars" / "sa_*.tar"), f"file://{root / 'photos'}"] if root is not None else [],
        "output": str(out),
        "shard_size": 3,
        "models_cache": models_cache,
        "caption": {"max_new_tokens": 8, "batch_size": 4},
        "clip": {"grounding_threshold": 0.0},
        "ray": {"cpus_per_task": 0.25, "cpus_per_actor": 0.25},
        "progress_seconds": 1.0,
    }
    data.update(overrides)
    return load_job(with_tiny_models(data))


@pytest.fixture(scope="module")
def finished_run(pipeline_run):
    """The session's one run over write_collection's collection (tests/conftest.py): read-only."""
    return pipeline_run.root, pipeline_run.out, pipeline_run.manifest, pipeline_run.expected


def test_every_input_is_written_or_rejected_once(finished_run):
    _, out, manifest, expected = finished_run
    totals = manifest["totals"]
    assert totals["inputs"] == expected["inputs"]
    assert totals["rejected"] == expected["broken"]
    assert totals["written"] + totals["rejected"] == totals["inputs"]
    assert totals["rejected_by_reason"] == {"decode_error": 1, "empty_file": 1, "not_an_image": 1}
    stats = duckdb.sql(f"select key, source from '{out}/stats/*.parquet'").fetchall()
    rejects = duckdb.sql(f"select key, source, stage, reason from '{out}/rejects/*.parquet'").fetchall()
    keys = [k for k, _ in stats] + [k for k, *_ in rejects]
    assert len(keys) == len(set(keys)) == expected["inputs"]
    assert {stage for _, _, stage, _ in rejects} == {"decode"}
    assert not os.listdir(out / "_work" / "fragments")
    assert not os.listdir(out / "_work" / "blobs")  # each shard's stored images went with its commit


def test_shards_read_back_whole_with_webdataset(finished_run):
    _, out, manifest, _ = finished_run
    shards = sorted(glob.glob(str(out / "shards" / "*.tar")))
    samples = list(wds.WebDataset(shards, shardshuffle=False, empty_check=False))
    assert len(samples) == manifest["totals"]["written"]
    for sample in samples:
        assert set(sample) >= {"__key__", "jpg", "txt", "json"}, sample["__key__"]
        record = json.loads(sample["json"])
        assert record["key"] == sample["__key__"]
        assert record["caption"] == sample["txt"].decode()
        assert record["n_nouns"] == len(record["nouns"])
        assert record["n_grounded"] == len(record["grounded_nouns"])
    keys = {s["__key__"] for s in samples}
    assert "sa_000000/sa_1" in keys and "photos/nested_dir/holiday_beach_1" in keys


def test_stats_with_duckdb_and_manifest(finished_run):
    _, out, manifest, _ = finished_run
    rows = duckdb.sql(f"select count(*), sum(n_nouns), avg(clip_score) from '{out}/stats/*.parquet'").fetchall()[0]
    table = concept_density(str(out))
    assert table["images"] == rows[0] == manifest["totals"]["written"]
    assert table["total_nouns"] == rows[1]
    assert table["mean_clip_score"] == pytest.approx(rows[2], rel=1e-5)
    lies = duckdb.sql(f"select format, passthrough from '{out}/stats/*.parquet' where key = 'photos/lies'").fetchall()[0]
    assert lies == ("jpeg", True)
    shard_sizes = {s["name"]: s["samples"] + s["rejected"] for s in manifest["shards"]}
    assert shard_sizes["sa_000000-00000"] == 3 and max(shard_sizes.values()) <= 3
    with open(out / "manifest.json") as f:
        on_disk = json.load(f)
    assert tuple(on_disk) == MANIFEST_KEYS
    assert on_disk["job"]["shard_size"] == 3 and on_disk["versions"]["torch"]
    assert set(on_disk["totals"]["rejected_by_reason"]) <= set(REASONS)


def test_rerun_on_finished_output_does_nothing_new(finished_run, models_cache, tmp_path):
    root, shared, manifest, _ = finished_run
    out = tmp_path / "out"  # a copy: the finished output is shared by the session's tests
    shutil.copytree(shared, out)
    before = {s["name"]: s["tar"] for s in manifest["shards"]}
    again = run_job(job_for(root, out, models_cache))
    assert {s["name"]: s["tar"] for s in again["shards"]} == before
    assert again["totals"] == manifest["totals"]
    assert [run["status"] for run in again["runs"]] == ["finished", "finished"]
    assert again["runs"][1]["added_inputs"] == [] and again["runs"][1]["written"] == 0


def test_sidecar_backend_rescores_existing_captions(tmp_path, ray_session, models_cache):
    os.makedirs(tmp_path / "tars" / "captions")
    write_tar(tmp_path / "tars" / "sa_000000.tar", sa1b_members(1, 2, captions=True) + sa1b_members(3, 2))
    (tmp_path / "tars" / "captions" / "sa_3.txt").write_text("a dog on the beach\n")  # PixArt's layout
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(jpeg_bytes(5))
    (photos / "cat.txt").write_text("a cat on a sofa")
    job = job_for(tmp_path, tmp_path / "out", models_cache, caption={"backend": "sidecar", "model": "/no/llava/needed"})
    manifest = run_job(job)
    captions = dict(duckdb.sql(f"select key, caption from '{tmp_path}/out/stats/*.parquet'").fetchall())
    assert captions == {"sa_000000/sa_1": "a caption for image 1", "sa_000000/sa_2": "a caption for image 2",
                        "sa_000000/sa_3": "a dog on the beach", "photos/cat": "a cat on a sofa"}
    rejects = duckdb.sql(f"select key, reason from '{tmp_path}/out/rejects/*.parquet'").fetchall()
    assert rejects == [("sa_000000/sa_4", "no_caption")]
    assert manifest["totals"]["inputs"] == 5
    nouns = dict(duckdb.sql(f"select key, nouns from '{tmp_path}/out/stats/*.parquet'").fetchall())
    assert nouns["photos/cat"] == ["cat", "sofa"]


def test_each_input_part_is_read_by_a_task_of_its_own(tmp_path, ray_session, models_cache):
    """Ray Data bundles as many blocks into a task as the task's largest batch size: the read,
    decode and crop of each part must be one task, so that a thousand tars spread over a
    cluster's CPUs rather than sixteen at a time through one."""
    import re

    from pixcap.pipeline.graph import build_dataset
    from pixcap.pipeline.inputs import list_sources
    from pixcap.pipeline.models import resolve_models
    from pixcap.pipeline.parts import make_parts, record_sources
    from pixcap.pipeline.progress import ProgressCounter
    from pixcap.pipeline.resources import fit_to_cluster
    from pixcap.output.storage import Storage

    (tmp_path / "in").mkdir()
    for t in range(6):
        write_tar(tmp_path / "in" / f"sa_{t:06d}.tar", sa1b_members(10 * t + 1, 2))
    job = fit_to_cluster(resolve_models(job_for(None, tmp_path / "out", models_cache, inputs=[str(tmp_path / "in")])),
                         lambda line: None)
    sources = list_sources(job.inputs)
    parts = make_parts(sources, record_sources(sources, [], job.output), job.shard_size)
    assert len(parts) == 6
    ds = build_dataset(parts, job, Storage(job.output), ProgressCounter.remote())
    assert sum(len(batch["fragment"]) for batch in ds.iter_batches(batch_size=None)) == 12  # ledger rows
    stats = ds.stats()
    read = re.search(r"MapBatches\(_read_part\)[^:]*: (\d+) tasks executed", stats)
    assert read and int(read.group(1)) == len(parts), stats[:3000]
