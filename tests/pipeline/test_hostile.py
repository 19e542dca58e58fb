"""The hostile corpus through the whole pipeline: each input written or rejected exactly once,
with its stable reason, and nothing read or written outside the input and output folders."""
import io
import os
import re
from collections import defaultdict

import duckdb
import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from pixcap.pipeline.run import run_job
from pixcap.schemas import REASONS

from .hostile import build_corpus
from .test_end_to_end import job_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, ray_session, models_cache):
    root = tmp_path_factory.mktemp("hostile")
    expected = build_corpus(root)
    before = {p for p in root.rglob("*")}
    out = root / "out"
    job = job_for(root, out, models_cache, inputs=[str(root / "in")], shard_size=8)
    manifest = run_job(job)
    return root, out, manifest, expected, before


def outcomes(out) -> dict:
    """{source: sorted [reason, ...]} over the stats ("" = written) and rejects tables."""
    found = defaultdict(list)
    for (source,) in duckdb.sql(f"select source from '{out}/stats/*.parquet'").fetchall():
        found[source].append("")
    for source, reason in duckdb.sql(f"select source, reason from '{out}/rejects/*.parquet'").fetchall():
        found[source].append(reason)
    return {source: sorted(reasons) for source, reasons in found.items()}


def test_each_hostile_input_ends_once_with_its_reason(hostile_run):
    _, out, manifest, expected, _ = hostile_run
    assert outcomes(out) == {source: sorted(reasons) for source, reasons in expected.items()}
    totals = manifest["totals"]
    inputs = sum(len(reasons) for reasons in expected.values())
    assert totals["inputs"] == inputs == totals["written"] + totals["rejected"]
    assert set(totals["rejected_by_reason"]) <= set(REASONS)
    errors = duckdb.sql(f"select error from '{out}/rejects/*.parquet'").fetchall()
    assert all(e and "\n" not in e and not re.search("0x[0-9a-f]{6,}", e) for (e,) in errors)  # one line, no addresses


def test_awkward_images_are_stored_upright_srgb_and_within_max_side(hostile_run):
    root, out, _, _, _ = hostile_run
    records = {}
    for sample in wds.WebDataset(sorted(str(p) for p in (out / "shards").glob("*.tar")), shardshuffle=False):
        records[sample["__key__"]] = Image.open(io.BytesIO(sample["jpg"]))
    assert all("." not in key and ".." not in key.split("/") and not key.startswith("/") for key in records)
    keys = [key for (key,) in duckdb.sql(f"select key from '{out}/stats/*.parquet'").fetchall()]
    assert len(keys) == len(set(keys)) == len(records)  # unique keys, crafted names included
    rows = dict(duckdb.sql(f"select source, key from '{out}/stats/*.parquet'").fetchall())
    image = lambda name: records[rows[f"{root / 'in' / 'hostile.tar'}::{name}"]]  # noqa: E731
    assert image("rotated.jpg").size == (150, 200)
    assert max(image("24mp.jpg").size) == 1024 and image("24mp.jpg").size == (1024, 683)
    assert np.asarray(image("profile.jpg")).reshape(-1, 3).mean(axis=0)[2] > 200  # red in the profile's space is blue
    assert image("animated.gif").size == (64, 48) and image("animated.webp").size == (64, 48)
    assert all(i.mode == "RGB" and i.format == "JPEG" for i in records.values())


def test_nothing_is_written_outside_the_output_or_read_outside_the_input(hostile_run):
    root, out, _, _, before = hostile_run
    created = {p for p in root.rglob("*")} - before
    assert created and all(p == out or out in p.parents for p in created)
    assert not (root / "evil.jpg").exists() and not os.path.exists("/abs.jpg")
    sha_of_secret = duckdb.sql(f"select count(*) from '{out}/stats/*.parquet' where source like '%secret%'").fetchall()
    assert sha_of_secret == [(0,)]
