"""The command line: exit codes and one-line messages, job validation, and `pixcap stats`."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pixcap.cli.main import main
from pixcap.pipeline.engine import check_gpus
from pixcap.analysis.stats import concept_density
from pixcap.schemas import JobError, load_job
from pixcap.schemas.records import SAMPLE_SCHEMA

from tests.tiny_jobs import with_tiny_models_yaml


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "job_text, message",
    [
        ("inputs: [x]\noutput: o\ncapton:\n  model: a\n", "unknown key capton"),
        ("inputs: [x]\noutput: o\ncaption:\n  batch_size: many\n", "caption.batch_size: expected int"),
        ("inputs: [x]\noutput: o\ncaption:\n  backend: gpt\n", "caption.backend: must be one of hf, vllm, sidecar"),
        ("inputs: [x]\noutput: o\nshard_size: 0\n", "shard_size: must be positive"),
        ("- not\n- a mapping\n", "a job file is a mapping"),
    ],
)
def test_bad_job_files_exit_2_with_one_line_naming_the_key(tmp_path, capsys, job_text, message):
    job = tmp_path / "job.yaml"
    job.write_text(job_text)
    code, out, err = run_cli(capsys, "run", str(job))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_bad_set_and_missing_inputs_exit_2(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(with_tiny_models_yaml(f"inputs: ['{tmp_path}/nothing-*.tar']\noutput: {tmp_path}/out\n"))
    code, _, err = run_cli(capsys, "run", str(job), "--set", "clip.grounding_threshold=high")
    assert code == 2 and "clip.grounding_threshold: expected float" in err
    code, _, err = run_cli(capsys, "run", str(job))
    assert code == 2 and "no inputs match" in err
    code, _, err = run_cli(capsys, "run", str(tmp_path / "missing.yaml"))
    assert code == 2 and "job file not found" in err
    code, _, err = run_cli(capsys, "run")
    assert code == 2 and len(err.strip().splitlines()) == 1


def job_over_one_image(tmp_path, text: str):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    job = tmp_path / "job.yaml"
    job.write_text(with_tiny_models_yaml(f"inputs: ['{tmp_path}/images']\n" + text))
    return str(job)


def refused(capsys, *argv) -> str:
    """Run the CLI, expect exit code 2 with one line on stderr; return that line."""
    code, _, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("pixcap: error: "), err
    return lines[0]


@pytest.mark.parametrize("output", ["images", "images/out", "images/deeper/out"])
def test_output_equal_to_or_inside_an_input_folder_is_refused(tmp_path, capsys, output):
    job = job_over_one_image(tmp_path, f"output: {tmp_path}/{output}\n")
    assert "inside the input folder" in refused(capsys, "run", job)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["a.jpg"]  # nothing written


def test_missing_model_path_is_refused_and_nothing_is_written(tmp_path, capsys):
    job = job_over_one_image(tmp_path, f"output: {tmp_path}/out\ncaption:\n  model: {tmp_path}/no-llava\n")
    assert "caption.model: model path does not exist" in refused(capsys, "run", job)
    assert not (tmp_path / "out").exists()


def test_yaml_tags_that_would_run_code_are_refused(tmp_path, capsys):
    marker = tmp_path / "ran"
    job = job_over_one_image(tmp_path, f"output: !!python/object/apply:os.system ['touch {marker}']\n")
    assert "job.yaml" in refused(capsys, "run", job)
    assert not marker.exists()


def test_asking_for_gpus_without_any_is_refused(ray_session, tmp_path, capsys, models_cache):
    with pytest.raises(JobError, match=r"caption.gpus_per_actor=1.0 but the Ray cluster has no GPU"):
        check_gpus(load_job({"caption": {"model": "tiny:llava", "gpus_per_actor": 1}}))
    check_gpus(load_job({"caption": {"backend": "sidecar", "gpus_per_actor": 1}}))  # sidecar needs none
    job = job_over_one_image(tmp_path, f"output: {tmp_path}/out\nmodels_cache: {models_cache}\n")
    line = refused(capsys, "run", job, "--set", "clip.gpus_per_actor=1")
    assert "clip.gpus_per_actor=1.0 but the Ray cluster has no GPU" in line
    assert not (tmp_path / "out").exists()


def write_stats(out, rows):
    (out / "stats").mkdir(parents=True)
    full = [{**{name: None for name in SAMPLE_SCHEMA.names}, "key": f"k{i}", "shard": "s", "source": "x", "sha256": "0", **row}
            for i, row in enumerate(rows)]
    half = len(full) // 2
    for name, part in (("s-00000", full[:half]), ("s-00001", full[half:])):
        pq.write_table(pa.Table.from_pylist(part, schema=SAMPLE_SCHEMA), out / "stats" / f"{name}.parquet")


def test_concept_density_counts_valid_and_distinct_nouns(tmp_path, capsys):
    # "dog" 12 times (valid: more than 10), "cat" 10 times (not valid), "kite" once.
    rows = [{"nouns": ["dog", "dog", "cat"], "n_nouns": 3, "clip_score": 0.5, "n_grounded": 1} for _ in range(5)]
    rows += [{"nouns": ["dog", "cat"], "n_nouns": 2, "clip_score": 0.2, "n_grounded": 0} for _ in range(2)]
    rows += [{"nouns": ["cat", "kite"], "n_nouns": 2, "clip_score": 0.3, "n_grounded": 2} for _ in range(3)]
    write_stats(tmp_path, rows)
    table = concept_density(str(tmp_path))
    assert table["images"] == 10 and table["total_nouns"] == 15 + 4 + 6
    assert table["distinct_nouns"] == 3 and table["valid_distinct_nouns"] == 1
    assert table["vn_dn"] == pytest.approx(1 / 3)
    assert table["nouns_per_image"] == pytest.approx(2.5)
    assert table["mean_clip_score"] == pytest.approx((5 * 0.5 + 2 * 0.2 + 3 * 0.3) / 10)
    assert table["grounded_nouns_per_image"] == pytest.approx((5 + 6) / 10)
    assert concept_density(str(tmp_path), valid_min_count=9)["valid_distinct_nouns"] == 2
    code, out, _ = run_cli(capsys, "stats", str(tmp_path), "--json")
    assert code == 0 and json.loads(out)["distinct_nouns"] == 3
    code, out, _ = run_cli(capsys, "stats", str(tmp_path), "--valid-min-count", "9")
    assert code == 0 and "valid distinct nouns (VN, > 9 times)" in out and "VN/DN" in out


def test_stats_on_a_folder_without_stats_exits_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "stats", str(tmp_path))
    assert code == 2 and "no stats parquet" in err


def test_unreachable_address_exits_2_quickly(tmp_path, capsys, models_cache):
    job = job_over_one_image(tmp_path, f"output: {tmp_path}/out\nmodels_cache: {models_cache}\n")
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in refused(capsys, "run", job, "--address", "127.0.0.1:1")
    assert not (tmp_path / "out").exists()


def test_no_inputs_matching_is_refused_and_nothing_is_written(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(with_tiny_models_yaml(f"inputs: ['{tmp_path}/nothing-*.tar', '{tmp_path}/nowhere']\noutput: {tmp_path}/out\n"))
    assert "no inputs match" in refused(capsys, "run", str(job))
    assert not (tmp_path / "out").exists()
