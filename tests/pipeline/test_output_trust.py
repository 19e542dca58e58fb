"""An output folder is one dataset: every input once, one configuration, nothing foreign touched.

Each test reproduces a defect a new user found (issue 9) on a real run through Ray.
"""
import io
import json
import os
import shutil

import duckdb
import pytest
import yaml

from pixcap.cli.main import main
from pixcap.pipeline.run import run_job
from pixcap.schemas import load_job

from tests.tiny_jobs import with_tiny_models

from .tarfiles import jpeg_bytes, sa1b_members, write_tar

pytestmark = pytest.mark.slow


def job_dict(inputs, out, models_cache, **overrides):
    data = {
        "inputs": [str(i) for i in inputs], "output": str(out), "shard_size": 2, "models_cache": models_cache,
        "caption": {"max_new_tokens": 6, "batch_size": 4}, "clip": {"grounding_threshold": 0.0},
        "ray": {"cpus_per_task": 0.25, "cpus_per_actor": 0.25}, "progress_seconds": 0.5,
    }
    data.update(overrides)
    return with_tiny_models(data)


def run(inputs, out, models_cache, stream=None, **overrides):
    return run_job(load_job(job_dict(inputs, out, models_cache, **overrides)), stream=stream or io.StringIO())


def cli(capsys, tmp_path, inputs, out, models_cache, *extra):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(job_dict(inputs, out, models_cache)))
    code = main(["run", str(job), *extra])
    return code, *capsys.readouterr()


def images(folder, seeds):
    os.makedirs(folder, exist_ok=True)
    for seed in seeds:
        (folder / f"img{seed}.jpg").write_bytes(jpeg_bytes(seed))


def sources(out):
    return dict(duckdb.sql(f"select key, source from '{out}/stats/*.parquet'").fetchall())


@pytest.fixture(scope="module")
def collection(tmp_path_factory, ray_session, models_cache):
    """A/sub and B/sub (same base name), photos/ beside photos-00000.tar, a folder of broken
    files; one run over A/sub (named three ways), photos and the tar (named twice), broken/."""
    root = tmp_path_factory.mktemp("trust")
    images(root / "A" / "sub", [1, 2])
    images(root / "B" / "sub", [3])
    images(root / "photos", [4])
    write_tar(root / "photos-00000.tar", sa1b_members(5, 2))
    (root / "broken").mkdir()
    (root / "broken" / "x.jpg").write_bytes(b"not an image")
    (root / "broken" / "y.jpg").write_bytes(b"")
    out = root / "out"
    messages = io.StringIO()
    inputs = [root / "A" / "sub", f"{root / 'A' / 'sub'}/", root / "A" / "sub" / "img1.jpg", root / "photos",
              root / "photos-00000.tar", root / "photos-0000*.tar", root / "broken"]
    manifest = run(inputs, out, models_cache, stream=messages)
    return root, out, manifest, messages.getvalue()


def test_the_same_input_named_several_ways_is_read_once(collection):
    root, out, manifest, _ = collection
    keys = sources(out)
    assert sorted(keys) == ["photos-00000/sa_5", "photos-00000/sa_6", "photos/img4", "sub/img1", "sub/img2"]
    assert manifest["totals"] == {**manifest["totals"], "inputs": 7, "written": 5, "rejected": 2}
    assert [entry["kind"] for entry in manifest["inputs"]] == ["folder", "folder", "folder", "tar"]


def test_a_tar_named_like_a_folder_chunk_is_its_own_part(collection):
    _, out, _, _ = collection
    shards = sorted(os.listdir(out / "shards"))
    assert "photos-00000-00000.tar" in shards and "photos-00000.tar" in shards


def test_a_shard_whose_inputs_were_all_rejected_has_no_tar_but_its_rejects(collection):
    _, out, manifest, _ = collection
    [broken] = [s for s in manifest["shards"] if s["name"].startswith("broken")]
    assert broken["samples"] == 0 and broken["rejected"] == 2 and broken["tar"] is None
    assert not (out / "shards" / f"{broken['name']}.tar").exists()
    assert sorted(os.listdir(out / "rejects")) == sorted(f"{s['name']}.parquet" for s in manifest["shards"])


def test_progress_lines_come_while_the_run_goes(collection):
    _, out, _, messages = collection
    lines = [line for line in messages.splitlines() if line.startswith("pixcap: parts ")]
    assert len(lines) >= 2, messages  # a timer, not only the end
    assert lines[-1].startswith("pixcap: parts 4/4 | inputs 7 done, 7 committed (5 written + 2 rejected)"), lines[-1]
    assert "Ray's own messages go to" in messages and os.listdir(out / "_logs")


def test_provenance_is_in_the_manifest(collection):
    _, out, manifest, _ = collection
    [first] = manifest["runs"]
    assert first["status"] == "finished" and first["ended"] >= first["started"]
    assert {"host", "user", "command", "pixcap", "python", "os", "git_commit"} <= set(first)
    assert len(first["added_inputs"]) == 4
    assert manifest["models"]["caption"]["revision"].startswith("sha256:")
    assert manifest["models"]["nouns"]["revision"].startswith("en_core_web_sm")
    assert all(entry["identity"] for entry in manifest["inputs"])
    assert manifest["fingerprint"]["shard_size"] == 2 and "caption.batch_size" not in manifest["fingerprint"]


def test_verify_checks_every_file_against_the_manifest(collection, tmp_path, capsys):
    _, out, _, _ = collection
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert main(["verify", str(copy)]) == 0
    tar = sorted((copy / "shards").iterdir())[0]
    tar.write_bytes(tar.read_bytes()[:-1] + b"x")
    assert main(["verify", str(copy)]) == 1
    assert f"shards/{tar.name}: sha256 differs" in capsys.readouterr().out


def test_settings_that_change_content_are_refused_and_nothing_is_touched(collection, tmp_path, capsys, models_cache):
    root, out, _, _ = collection
    before = (out / "manifest.json").read_bytes()
    for setting, named in (("shard_size=4", "shard_size: 2 -> 4"), ("caption.prompt=Say hi", "caption.prompt: ")):
        code, _, err = cli(capsys, tmp_path, [root / "A" / "sub"], out, models_cache, "--set", setting)
        assert code == 2 and named in err and len(err.strip().splitlines()) == 1, err
    code, _, err = cli(capsys, tmp_path, [root / "B" / "sub"], out, models_cache, "--set", "decode.max_side=512")
    assert code == 2 and "decode.max_side: 1024 -> 512" in err
    assert (out / "manifest.json").read_bytes() == before


def test_a_file_added_to_a_processed_folder_is_refused_not_skipped(collection, tmp_path, capsys, models_cache):
    root, out, _, _ = collection
    job_inputs = [root / "A" / "sub"]
    images(root / "A" / "sub", [9])
    try:
        code, _, err = cli(capsys, tmp_path, job_inputs, out, models_cache)
    finally:
        (root / "A" / "sub" / "img9.jpg").unlink()
    assert code == 2 and f"{root / 'A' / 'sub'}" in err and "changed since" in err, err


def test_a_folder_that_is_not_a_pixcap_output_is_refused(collection, tmp_path, capsys, models_cache):
    root, _, _, _ = collection
    foreign = tmp_path / "foreign"
    (foreign / "shards").mkdir(parents=True)
    (foreign / "manifest.json").write_text('{"mine": true}')
    (foreign / "shards" / "my-own-dataset-000.tar").write_bytes(b"mine")
    code, _, err = cli(capsys, tmp_path, [root / "B" / "sub"], foreign, models_cache)
    assert code == 2 and "pixcap did not write" in err
    (foreign / "manifest.json").unlink()
    code, _, err = cli(capsys, tmp_path, [root / "B" / "sub"], foreign, models_cache)
    assert code == 2 and "not a pixcap output" in err
    assert sorted(p.name for p in foreign.rglob("*")) == ["my-own-dataset-000.tar", "shards"]
    code, _, err = cli(capsys, tmp_path, [root / "B" / "sub"], foreign / "shards" / "my-own-dataset-000.tar", models_cache)
    assert code == 2 and "is a file" in err


def test_same_base_name_from_another_folder_is_added_not_skipped(collection, models_cache):
    """Runs last in this module: it adds B/sub to the output (same settings), beside user files."""
    root, out, first, _ = collection
    (out / "notes").mkdir()
    (out / "notes" / "draft.tmp").write_text("mine")
    (out / "shards" / "my-own-dataset-000.tar").write_bytes(b"mine")
    manifest = run([root / "B" / "sub"], out, models_cache)
    keys = sources(out)
    added = [key for key in keys if key.startswith("sub-")]
    assert len(added) == 1 and keys[added[0]].startswith(str(root / "B" / "sub"))
    assert keys["sub/img1"].startswith(str(root / "A" / "sub"))
    assert manifest["totals"]["inputs"] == first["totals"]["inputs"] + 1
    assert [run["added_inputs"] for run in manifest["runs"]][1] == [str(root / "B" / "sub")]
    assert (out / "notes" / "draft.tmp").read_text() == "mine"
    assert (out / "shards" / "my-own-dataset-000.tar").read_bytes() == b"mine"
