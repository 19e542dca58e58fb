"""The pipeline with inputs and output on S3 (moto's server on 127.0.0.1): a whole run, a
SIGKILLed driver resumed, and the hostile tars, each input accounted for once."""
import io
import json
import os
import signal
import subprocess
import sys

import fsspec
import pyarrow.parquet as pq
import pytest
import yaml

from pixcap.cli.main import main
from pixcap.output import failpoints
from pixcap.pipeline.run import run_job
from pixcap.schemas.manifest import LOCK_NAME

from .hostile import build_corpus
from .test_end_to_end import job_for

pytestmark = pytest.mark.slow


def s3():
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.invalidate_cache()
    return fs


def rows(out_url: str) -> dict:
    """{key: (source, caption)} over the stats, and [(source, reason)] of the rejects, from S3."""
    fs = s3()
    found, rejects = {}, []
    for path in sorted(fs.glob(f"{out_url}/stats/*.parquet")):
        with fs.open(path) as f:
            for row in pq.read_table(f).to_pylist():
                found[row["key"]] = (row["source"], row["caption"])
    for path in sorted(fs.glob(f"{out_url}/rejects/*.parquet")):
        with fs.open(path) as f:
            rejects += [(r["source"], r["reason"]) for r in pq.read_table(f).to_pylist()]
    return found, sorted(rejects)


def s3_job(inputs_url, out_url, models_cache):
    return job_for(None, out_url, models_cache, inputs=[f"{inputs_url}/tars/sa_*.tar", f"{inputs_url}/photos"])


def test_a_run_from_s3_to_s3_accounts_for_every_input_once(s3_collection, s3_run):
    inputs_url, _ = s3_collection
    out, manifest, expected = s3_run
    totals = manifest["totals"]
    assert totals["inputs"] == expected["inputs"] and totals["rejected"] == expected["broken"]
    found, rejects = rows(out)
    assert len(found) + len(rejects) == expected["inputs"]
    assert all(source.startswith(f"{inputs_url}/") for source, _ in found.values())
    assert not s3().exists(f"{out}/{LOCK_NAME}")
    assert not s3().glob(f"{out}/_work/fragments/*")
    assert not s3().glob(f"{out}/_work/blobs/*")  # every shard's stored images went with its commit


def test_stats_and_verify_read_the_output_on_s3(s3_run, capsys):
    out, manifest, _ = s3_run
    assert main(["stats", out, "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["images"] == manifest["totals"]["written"]
    assert main(["verify", out]) == 0
    fs = s3()
    [tar] = sorted(fs.glob(f"{out}/shards/*.tar"))[:1]
    fs.pipe_file(tar, fs.cat_file(tar)[:-1] + b"x")
    assert main(["verify", out]) == 1
    assert "sha256 differs" in capsys.readouterr().out


def test_the_report_of_an_output_on_s3_shows_its_gallery_and_near_duplicates(s3_run, tmp_path):
    out, manifest, _ = s3_run
    page = tmp_path / "report.html"
    assert main(["report", out, "--output", str(page)]) == 0
    html = page.read_text()
    thumbnails = html.count('src="data:image/jpeg;base64,')
    assert thumbnails >= min(manifest["totals"]["written"], 3), "the gallery read no shard on S3"
    assert "not found" not in html and "no CLIP embeddings stored" not in html


def test_a_sigkilled_driver_on_s3_resumes_to_the_same_output(s3_collection, s3_run, tmp_path, models_cache, ray_session):
    inputs_url, _ = s3_collection
    reference, _, _ = s3_run
    out = "s3://pixcap-out/killed"
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(s3_job(inputs_url, out, models_cache).to_dict()))
    env = {**os.environ, failpoints.ENV: "fragment:2"}
    driver = subprocess.run(
        [sys.executable, "-m", "pixcap.cli.main", "run", str(job_file), "--address", ray_session.get_runtime_context().gcs_address],
        env=env, capture_output=True, text=True, timeout=600)
    assert driver.returncode == -signal.SIGKILL, driver.stderr[-2000:]
    assert s3().glob(f"{out}/_work/fragments/*.parquet")  # it died with finished rows not committed
    run_job(s3_job(inputs_url, out, models_cache), stream=io.StringIO())
    assert rows(out) == rows(reference)


def test_hostile_tars_on_s3_end_once_each(tmp_path, s3_server, ray_session, models_cache):
    expected = build_corpus(tmp_path)
    local_in = tmp_path / "in"
    fs = s3()
    fs.mkdir("pixcap-hostile")
    for tar in ("hostile.tar", "cut.tar"):
        fs.put_file(str(local_in / tar), f"s3://pixcap-hostile/in/{tar}")
    fs.invalidate_cache()
    out = "s3://pixcap-hostile/out"
    run_job(job_for(None, out, models_cache, inputs=["s3://pixcap-hostile/in/*.tar"], shard_size=8), stream=io.StringIO())
    found, rejects = rows(out)
    outcomes = sorted([(source, "") for source, _ in found.values()] + rejects)
    want = sorted((source.replace(str(local_in), "s3://pixcap-hostile/in"), reason)
                  for source, reasons in expected.items() for reason in reasons
                  if source.startswith(str(local_in / "hostile.tar")) or source.startswith(str(local_in / "cut.tar")))
    assert outcomes == want


def test_the_jobs_storage_options_reach_the_listing_and_the_read_tasks(s3_collection, s3_server):
    """storage_options go to fsspec with every input URL: an endpoint named there is the one the
    listing and the read use (a closed port fails both; the moto server's serves both)."""
    from pixcap.pipeline.inputs import list_sources
    from pixcap.pipeline.parts import make_parts, record_sources
    from pixcap.schemas import batch as B
    from pixcap.stages.read import ReadStage

    inputs_url, _ = s3_collection
    tars = f"{inputs_url}/tars/sa_*.tar"
    closed = {"endpoint_url": "http://127.0.0.1:9", "skip_instance_cache": True}
    with pytest.raises(Exception, match="127.0.0.1:9"):
        list_sources([tars], closed)
    served = {"endpoint_url": s3_server, "skip_instance_cache": True}
    sources = list_sources([tars], served)
    parts = make_parts(sources, record_sources(sources, [], "out"), 100)
    columns = {c: [p[c] for p in parts] for c in parts[0]}
    read = [batch for batch in ReadStage(100, False, storage_options=served)(columns)]
    assert sum(len(b[B.KEY]) for b in read) and not any(r for b in read for r in b[B.REJECT_REASON])
    # An unreachable store is no bad input: the read task fails (Ray retries it, then the run
    # stops with one line), rather than rejecting every member.
    with pytest.raises(Exception, match="127.0.0.1:9"):
        list(ReadStage(100, False, storage_options=closed)(columns))
