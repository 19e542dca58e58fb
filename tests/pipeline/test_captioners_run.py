"""One pipeline run of jobs/local_captions.yaml's captioners (two families: LLaVA padded and greedy, Qwen2-VL
native and sampled, quoting the first) and its classifier, on a small tar whose images carry their own
captions: the shards, the stats as DuckDB, pandas and polars read them, Table 1 per captioner, and the same
captions from a run SIGKILLed half-way and resumed."""
import glob
import io
import json
import os
import signal
import subprocess
import sys
import tarfile

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pixcap.analysis.stats import concept_density, format_table
from pixcap.output import failpoints
from pixcap.pipeline.run import run_job
from pixcap.schemas import load_job, read_job_yaml

from .tarfiles import sa1b_members, shard_members, write_tar

pytestmark = pytest.mark.slow
OFFICIAL_PROMPT = 'Given the caption of this image "{sidecar}", describe this image in a very detailed manner'


def captions_job(root, out, models_cache, batch_size=None) -> dict:
    """jobs/local_captions.yaml on ROOT's tar; batch_size: every model's (speed only: the output is the same)."""
    data = read_job_yaml("jobs/local_captions.yaml")
    data.update(inputs=[str(root / "sa_*.tar")], output=str(out), models_cache=models_cache, shard_size=2,
                progress_seconds=1.0)
    data["captioners"][0]["prompt"] = OFFICIAL_PROMPT  # PixArt-alpha's caption-conditioned prompt
    for captioner in data["captioners"]:
        captioner["max_new_tokens"] = 8
    data["t5_tokens"]["tokenizer"] = ""  # one actor pool fewer (tests/stages/test_captioners.py counts T5 tokens)
    if batch_size:
        for config in data["captioners"] + [data["clip"]]:
            config["batch_size"] = batch_size
    return data


@pytest.fixture(scope="module")
def captions_run(tmp_path_factory, ray_session, models_cache):
    root = tmp_path_factory.mktemp("captioners-run")
    members = sa1b_members(0, 3, captions=True) + sa1b_members(3, 1)  # sa_3 has no caption of its own
    write_tar(root / "sa_000000.tar", members)
    manifest = run_job(load_job(captions_job(root, root / "out", models_cache)))
    return root / "out", manifest


def test_every_input_is_accounted_for_and_a_missing_quote_is_a_reject(captions_run):
    out, manifest = captions_run
    assert (manifest["totals"]["written"], manifest["totals"]["rejected"]) == (3, 1)
    rejects = duckdb.sql(f"select key, stage, reason from '{out}/rejects/*.parquet'").fetchall()
    assert rejects == [("sa_000000/sa_3", "captioners.long", "no_caption")]
    assert set(manifest["models"]) == {"captioners.long", "captioners.short", "classifiers.nsfw_score", "nouns", "clip",
                                       "clip_nsfw"}


def test_shards_hold_the_primary_caption_and_each_captioners(captions_run):
    out, _ = captions_run
    samples = {}
    for path in sorted(glob.glob(f"{out}/shards/*.tar")):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                key, _, suffix = member.name.partition(".")
                samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    assert len(samples) == 3
    for members in samples.values():
        assert set(members) == {"jpg", "txt", "long.txt", "short.txt", "json"}
        record = json.loads(members["json"])
        assert members["txt"] == members["long.txt"] == record["caption_long"].encode() == record["caption"].encode()
        assert members["short.txt"].decode() == record["caption_short"] and record["caption_short"]
        assert record["caption_model_short"].endswith("tiny-qwen2vl") and 0 <= record["nsfw_score"] <= 1
        assert 0 < record["nsfw_clip_score"] < 1  # LAION's CLIP-based head on the clip stage's embedding


def test_stats_read_every_caption_with_its_scores_in_duckdb_pandas_and_polars(captions_run):
    import pandas as pd
    import polars as pl

    out, _ = captions_run
    schema = pq.read_schema(glob.glob(f"{out}/stats/*.parquet")[0])
    for name in ("long", "short"):
        assert schema.field(f"clip_score_{name}").type == pa.float32()
        assert schema.field(f"nouns_{name}").type == pa.list_(pa.string())
    assert "t5_tokens" not in schema.names  # the stage is off: no columns of it
    assert schema.field("nsfw_score").type == pa.float32()
    rows = duckdb.sql(f"select caption, caption_long, clip_score, clip_score_long, clip_score_short, n_nouns_short "
                      f"from '{out}/stats/*.parquet' order by key").fetchall()
    assert len(rows) == 3
    for caption, long, score, score_long, score_short, n_nouns in rows:
        assert caption == long and score == score_long and -1 <= score_short <= 1 and n_nouns >= 0
    frame = pd.read_parquet(f"{out}/stats")
    assert frame["caption_short"].str.len().gt(0).all() and frame["nsfw_score"].between(0, 1).all()
    polars = pl.read_parquet(f"{out}/stats/*.parquet")
    assert polars["clip_score_short"].dtype == pl.Float32 and polars.height == 3
    kept = duckdb.sql(f"select count(*) from '{out}/stats/*.parquet' where nsfw_score < 2").fetchall()[0][0]
    assert kept == 3
    assert schema.field("nsfw_clip_score").type == pa.float32() and frame["nsfw_clip_score"].between(0, 1).all()


def test_pixcap_stats_prints_table1_per_captioner(captions_run):
    out, _ = captions_run
    table = concept_density(str(out))
    assert set(table["captioners"]) == {"long", "short"}
    assert table["captioners"]["long"]["total_nouns"] == table["total_nouns"]  # the primary is the long one
    nouns_short = duckdb.sql(f"select sum(n_nouns_short) from '{out}/stats/*.parquet'").fetchall()[0][0]
    assert table["captioners"]["short"]["total_nouns"] == nouns_short
    lines = format_table(table).splitlines()
    assert lines[0].split()[-2:] == ["long", "short"] and lines[1].split()[-2:] == ["3", "3"]


def captions_of(out) -> dict:
    """{tar member name: bytes} of every caption in the shards (KEY.txt, KEY.long.txt, KEY.short.txt)."""
    return {name: data for name, data in shard_members(out).items() if name.endswith(".txt")}


def test_a_run_sigkilled_while_captioning_writes_the_same_captions(captions_run, tmp_path, models_cache, ray_session):
    """The driver SIGKILLed while the sampled captioner works (its second batch): the rerun captions the rows again,
    one at a time where the uninterrupted run took four, and every caption, the sampled captioner's included,
    is the same byte for byte."""
    reference, manifest = captions_run
    root = reference.parent
    out = tmp_path / "killed"
    job_file = tmp_path / "killed.yaml"
    job_file.write_text(yaml.safe_dump(captions_job(root, out, models_cache, batch_size=1)))
    env = {**os.environ, failpoints.ENV: "captioners.short:2:driver", failpoints.ONCE_ENV: str(tmp_path / "fired")}
    address = ray_session.get_runtime_context().gcs_address
    driver = subprocess.run([sys.executable, "-m", "pixcap.cli.main", "run", str(job_file), "--address", address],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    assert driver.returncode == -signal.SIGKILL, driver.stderr[-2000:]
    assert not glob.glob(f"{out}/stats/*.parquet")  # killed before any shard was committed
    resumed = run_job(load_job(captions_job(root, out, models_cache, batch_size=1)), stream=io.StringIO())
    assert resumed["totals"] == manifest["totals"]
    captions = captions_of(out)
    assert len(captions) == 9  # sa_0..2, each KEY.txt, KEY.long.txt and KEY.short.txt (sa_3 is a reject)
    assert captions == captions_of(reference)
