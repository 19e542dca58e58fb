"""The train job: named keys, defaults, and one-line errors naming the dotted key."""
from pathlib import Path

import pytest

from pixcap.cli.main import main
from pixcap.schemas import JobError, load_train_job, read_job_yaml

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def test_defaults_and_named_keys():
    job = load_train_job({"max_steps": 5, "batch_size": 4, "resolution": 512, "lr": 1e-4, "load_from": "x",
                          "filters": {"min_clip_score": 0.3, "min_n_nouns": 2, "max_aspect_ratio": 3, "min_side": 256}})
    assert (job.max_steps, job.batch_size, job.resolution, job.lr, job.load_from) == (5, 4, 512, 1e-4, "x")
    assert job.filters.max_aspect_ratio == 3.0 and job.resolutions == [512]
    default = load_train_job({})
    assert (default.lr, default.weight_decay, default.eps, default.caption_dropout) == (2e-5, 3e-2, 1e-10, 0.1)


@pytest.mark.parametrize("data, message", [
    ({"filters": {"min_clip": 0.2}}, "unknown key filters.min_clip"),
    ({"resolution": 300}, "resolution: must be one of 256, 512, 1024"),
    ({"multiscale": [512, 2048]}, r"multiscale\[1\]"),
    ({"batch_size": "8"}, "batch_size: expected int"),
    ({"model": "XXL"}, "model: must be one of"),
    ({"filters": {"max_aspect_ratio": 0.5}}, "filters.max_aspect_ratio"),
])
def test_bad_values_name_their_key(data, message):
    with pytest.raises(JobError, match=message):
        load_train_job(data)


@pytest.mark.parametrize("name", ["tiny", "stage1_dit_init", "stage2_alignment", "stage3_aesthetic"])
def test_shipped_jobs_are_valid(name):
    load_train_job(read_job_yaml(str(JOBS / f"train_{name}.yaml")))


def test_cli_refuses_a_bad_override_in_one_line(capsys):
    assert main(["train", str(JOBS / "train_tiny.yaml"), "--set", "filters.min_side=big"]) == 2
    assert capsys.readouterr().err.strip() == "pixcap: error: filters.min_side: expected int, got str 'big'"
