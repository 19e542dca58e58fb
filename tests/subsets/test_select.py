"""`pixcap select` on a real output (the pipeline run once, with the tiny models): the subset is
a pixcap output that verify, webdataset, DuckDB and the trainer read; its samples are the
parent's, byte for byte; dedup finds the copies across tars; a killed select resumes to the
same subset; a bad selection is refused with nothing written."""
import glob
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pixcap.subsets.select import select_subset
from pixcap.subsets.cli import register
from pixcap.subsets.commit import FAILPOINT, ParentDamaged
from pixcap.output.verify import verify_output
from pixcap.schemas import JobError
from pixcap.schemas.manifest import EMBEDDINGS_DIR, MANIFEST_NAME, REJECTS_DIR, SHARDS_DIR, STATS_DIR
from pixcap.schemas.selection import Selection, parse_dedup

from tests.object_store import upload
from .subset_collection import EXACT_COPY, NEAR_COPY, NEAR_COSINE

pytestmark = pytest.mark.slow
TOP_HALF = Selection(top_fraction=0.5)


@pytest.fixture
def parent(subset_parent):
    return subset_parent


def select(parent, subset, selection=TOP_HALF) -> dict:
    return select_subset(parent, str(subset), selection, command=["pixcap", "select"], stream=io.StringIO())


def stats_rows(out) -> dict:
    rows = duckdb.sql(f"SELECT * FROM read_parquet('{out}/{STATS_DIR}/*.parquet')").to_arrow_table().to_pylist()
    return {row["key"]: row for row in rows}


def members(out) -> dict:
    """{key: {extension: bytes}} of every shard, read by webdataset."""
    found = {}
    for sample in wds.WebDataset(sorted(glob.glob(f"{out}/{SHARDS_DIR}/*.tar")), shardshuffle=False):
        found[sample["__key__"]] = {k: v for k, v in sample.items() if not k.startswith("__")}
    return found


def embeddings(out) -> dict:
    """{key: embedding} over the output's shards."""
    found = {}
    for path in sorted(glob.glob(f"{out}/{STATS_DIR}/*.parquet")):
        name = os.path.basename(path)[: -len(".parquet")]
        keys = pq.read_table(path, columns=["key"]).column("key").to_pylist()
        for key, vector in zip(keys, np.load(f"{out}/{EMBEDDINGS_DIR}/{name}.npy")):
            found[key] = vector
    return found


def file_hashes(out) -> dict:
    return {os.path.relpath(p, out): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for d in (SHARDS_DIR, STATS_DIR, REJECTS_DIR, EMBEDDINGS_DIR) for p in glob.glob(f"{out}/{d}/*")}


def test_top_fraction_keeps_the_best_half_byte_for_byte(parent, tmp_path):
    manifest = select(parent, tmp_path / "half")
    everything = stats_rows(parent)
    best = sorted(everything, key=lambda k: (-everything[k]["clip_score"], k))[: round(len(everything) / 2)]
    kept = stats_rows(tmp_path / "half")
    assert sorted(kept) == sorted(best)
    assert all(kept[key] == everything[key] for key in kept)  # the stats rows, column for column
    parent_members, parent_vectors = members(parent), embeddings(parent)
    subset_members, subset_vectors = members(tmp_path / "half"), embeddings(tmp_path / "half")
    assert subset_members == {key: parent_members[key] for key in best}  # image, caption and record bytes
    assert all(np.array_equal(subset_vectors[key], parent_vectors[key]) for key in best)
    assert verify_output(str(tmp_path / "half")) == []
    assert manifest["parent"]["url"] == os.path.abspath(parent)
    assert manifest["parent"]["fingerprint"] == json.load(open(f"{parent}/{MANIFEST_NAME}"))["fingerprint"]
    assert manifest["selection"] == {"where": "", "top_fraction": 0.5, "by": "clip_score", "dedup": []}
    assert manifest["totals"]["written"] == len(best) and manifest["totals"]["rejected"] == 0
    for shard in manifest["shards"]:  # every shard's rejects file is there, and empty
        assert pq.read_table(tmp_path / "half" / shard["rejects"]["path"]).num_rows == 0


def test_the_subset_is_read_by_duckdb_webdataset_and_the_trainer(parent, tmp_path, models_cache):
    from pixcap.models.tiny import build_tiny_models
    from pixcap.trainer.loop import train

    from ..trainer.shards_fixture import tiny_train_job

    manifest = select(parent, tmp_path / "half")
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/half/{STATS_DIR}/*.parquet')").fetchall()[0][0]
    assert count == len(members(tmp_path / "half")) == manifest["totals"]["written"]
    job = tiny_train_job([f"{tmp_path}/half/{SHARDS_DIR}/*.tar"], tmp_path / "run", build_tiny_models(models_cache),
                         max_steps=2, checkpoint_every=1000)
    train(job)
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 2


def test_where_is_evaluated_by_duckdb_over_the_stats(parent, tmp_path):
    where = "clip_score >= 0 AND n_nouns >= 1"
    select(parent, tmp_path / "where", Selection(where=where))
    expected = duckdb.sql(f"SELECT key FROM read_parquet('{parent}/{STATS_DIR}/*.parquet') WHERE {where}").fetchall()
    assert sorted(stats_rows(tmp_path / "where")) == sorted(key for (key,) in expected)


def test_dedup_exact_keeps_the_first_key_of_a_copy_in_another_tar(parent, tmp_path):
    manifest = select(parent, tmp_path / "exact", Selection(dedup=(parse_dedup("exact"),)))
    copy, original = EXACT_COPY
    kept = stats_rows(tmp_path / "exact")
    assert copy not in kept and original in kept
    assert sorted(kept) == sorted(set(stats_rows(parent)) - {copy})
    assert manifest["runs"][-1]["selected"] == {"parent": 12, "dedup exact": 11}


def test_dedup_clip_drops_the_reencoded_copy(parent, tmp_path):
    selection = Selection(dedup=(parse_dedup(f"clip:{NEAR_COSINE}"),))
    select(parent, tmp_path / "near", selection)
    vectors = embeddings(parent)
    keys = sorted(vectors)
    unit = np.stack([vectors[k] for k in keys]).astype(np.float32)
    cosines = unit @ unit.T
    # Brute force over every pair: a key goes when an earlier key that stays is that close.
    expected = []
    for i, key in enumerate(keys):
        if not any(cosines[i, j] >= NEAR_COSINE for j, earlier in enumerate(keys[:i]) if earlier in expected):
            expected.append(key)
    kept = sorted(stats_rows(tmp_path / "near"))
    assert kept == expected
    assert NEAR_COPY[0] not in kept and NEAR_COPY[1] in kept and EXACT_COPY[0] not in kept


def test_a_rerun_changes_nothing_and_another_selection_is_refused(parent, tmp_path):
    select(parent, tmp_path / "half")
    before = file_hashes(tmp_path / "half")
    manifest = select(parent, tmp_path / "half")
    assert file_hashes(tmp_path / "half") == before
    assert [run["status"] for run in manifest["runs"]] == ["finished", "finished"]
    with pytest.raises(JobError, match="another selection"):
        select(parent, tmp_path / "half", Selection(top_fraction=0.3))
    with pytest.raises(JobError, match="another selection"):
        select(parent, tmp_path / "half", Selection(top_fraction=0.5, dedup=(parse_dedup("exact"),)))


def cli(*argv):
    """Parse as `pixcap select ...` and call the handler."""
    from pixcap.cli.main import _Parser

    parser = _Parser(prog="pixcap")
    register(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    args = parser.parse_args(["select", *argv])
    return args.func(args)


@pytest.mark.parametrize("where, message", [
    ("clip_score > 0) UNION SELECT key FROM x --", "Parser Error"),
    ("clip_score > 0; DROP TABLE x", "more than one statement"),
    ("clip_score > 0, n_nouns > 1", "single expression"),
    ("no_such_column > 1", "no_such_column"),
])
def test_a_predicate_that_is_not_one_valid_expression_is_refused_with_nothing_written(parent, tmp_path, where, message):
    with pytest.raises(JobError, match=message) as refused:
        cli(parent, "--where", where, "--output", str(tmp_path / "bad"))
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "bad").exists()


def test_bad_command_lines_are_refused(parent, tmp_path):
    out = str(tmp_path / "bad")
    for argv, message in [([], "nothing to select by"), (["--top-fraction", "1.5"], "in \\(0, 1\\]"),
                          (["--by", "n_nouns"], "only with --top-fraction"),
                          (["--top-fraction", "0.5", "--by", "caption"], "needs a number"),
                          (["--top-fraction", "0.5", "--by", "nope"], "no such column"),
                          (["--dedup", "clip:0"], "cosine"), (["--dedup", "fuzzy"], "expected exact")]:
        with pytest.raises(JobError, match=message):
            cli(parent, *argv, "--output", out)
    assert not os.path.exists(out)
    with pytest.raises(JobError, match="inside it"):
        cli(parent, "--top-fraction", "0.5", "--output", f"{parent}/half")
    (tmp_path / "not-an-output").mkdir()
    with pytest.raises(JobError, match="no pixcap manifest"):
        cli(str(tmp_path / "not-an-output"), "--top-fraction", "0.5", "--output", out)


def test_a_dry_run_prints_each_step_s_count_and_writes_nothing(parent, tmp_path, capsys):
    assert cli(parent, "--dedup", "exact", "--top-fraction", "0.5", "--dry-run") == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines == [["parent", "12"], ["dedup", "exact", "11"], ["top", "0.5", "by", "clip_score", "6"]]
    with pytest.raises(JobError, match="--output"):
        cli(parent, "--dedup", "exact")


def test_a_parent_whose_files_differ_from_its_manifest_is_refused(parent, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(parent, damaged)
    tar = sorted(glob.glob(f"{damaged}/{SHARDS_DIR}/*.tar"))[0]
    data = bytearray(open(tar, "rb").read())
    data[2000] ^= 0xFF  # inside the first image
    open(tar, "wb").write(bytes(data))
    with pytest.raises(ParentDamaged, match="differs from its manifest"):
        select(str(damaged), tmp_path / "copy", Selection(where="true"))


SELECT_SCRIPT = """
import io, sys
from pixcap.subsets.select import select_subset
from pixcap.schemas.selection import Selection
select_subset(sys.argv[1], sys.argv[2], Selection(top_fraction=0.5), stream=io.StringIO())
"""


@pytest.mark.parametrize("nth", [1, 3])
def test_a_killed_select_resumes_to_the_same_subset(parent, tmp_path, nth):
    reference = tmp_path / "reference"
    select(parent, reference)
    subset = tmp_path / "subset"
    env = {**os.environ, "PIXCAP_KILL_AT": f"{FAILPOINT}:{nth}"}
    killed = subprocess.run([sys.executable, "-c", SELECT_SCRIPT, parent, str(subset)], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert verify_output(str(subset))  # not finished, and it says so
    select(parent, subset)
    assert file_hashes(subset) == file_hashes(reference)
    assert verify_output(str(subset)) == []
    assert [run["status"] for run in json.load(open(subset / MANIFEST_NAME))["runs"]] == ["running", "finished"]


def test_select_from_s3_to_s3_equals_the_local_subset(parent, tmp_path, bucket):
    import fsspec

    upload(parent, f"{bucket}/parent")
    manifest = select(f"{bucket}/parent", f"{bucket}/half")
    assert verify_output(f"{bucket}/half") == []
    local = select(parent, tmp_path / "half")
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    for ours, theirs in zip(manifest["shards"], local["shards"]):
        for kind in ("tar", "embeddings", "stats", "rejects"):
            assert ours[kind]["sha256"] == theirs[kind]["sha256"]
            assert fs.cat_file(f"{bucket}/half/{ours[kind]['path']}") == (tmp_path / "half" / theirs[kind]["path"]).read_bytes()


def small_parent(out) -> None:
    """A finished output of two shards made without Ray (commits and a manifest, as a run writes them)."""
    from pixcap.output.commit import commit_shard
    from pixcap.output.fragments import FragmentWriter
    from pixcap.output.manifest import new_manifest, shard_entries, totals, write_manifest
    from pixcap.output.storage import Storage
    from tests.output.batches import finished_batch

    storage, files = Storage(str(out)), {}
    for shard in ("p-00000", "p-00001"):
        fragment = FragmentWriter(storage)(finished_batch(shard, [0, 1], count=2, part_end=True))["fragment"][0]
        files.update(commit_shard(storage, shard, [fragment])["files"])
    manifest = new_manifest({"shard_size": 2})
    manifest["inputs"] = [{"uri": "/in.tar", "kind": "tar", "identity": {"size": 1}, "prefix": "p"}]
    manifest["shards"] = shard_entries(storage, {"p-00000", "p-00001"}, [], files)
    manifest.update(totals=totals(manifest["shards"]), runs=[{"started": "t", "status": "finished"}])
    write_manifest(storage, manifest)


@pytest.mark.parametrize("cut", [True, False], ids=["footer cut", "pages overwritten"])
def test_a_damaged_stats_parquet_of_the_parent_is_named_in_one_line(tmp_path, capsys, cut):
    from pixcap.cli.main import main

    small_parent(tmp_path / "out")
    stats = tmp_path / "out" / STATS_DIR / "p-00001.parquet"
    data = bytearray(stats.read_bytes())
    stats.write_bytes(bytes(data[: len(data) // 2]) if cut else bytes(data[:8]) + b"\xff" * (len(data) // 2) + bytes(data[8 + len(data) // 2:]))
    for extra in (["--output", str(tmp_path / "sub")], ["--dry-run"]):
        assert main(["select", str(tmp_path / "out"), "--where", "clip_score > 0", *extra]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"{stats}: not a readable parquet" in err, err
    assert not (tmp_path / "sub").exists() or not any((tmp_path / "sub").rglob("*.tar"))
