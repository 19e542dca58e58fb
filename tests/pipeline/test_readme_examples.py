"""Every python example in the README runs as printed, on an output with rejects and one without.

The examples read `out/sample`, so each runs in a folder where `out/sample` is a finished output.
"""
import os
import re
import shutil
from pathlib import Path

import pytest

from pixcap.pipeline.run import run_job
from pixcap.schemas import load_job

from .tarfiles import sa1b_members, write_tar

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


def python_examples() -> list:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(scope="module", params=["with rejects", "without rejects"])
def output_as_printed(request, tmp_path_factory, ray_session, models_cache, pipeline_run):
    root = tmp_path_factory.mktemp("readme")
    out = root / "cwd" / "out" / "sample"
    if request.param == "with rejects":  # a copy of the session's one pipeline output: 3 of its 15 inputs rejected
        shutil.copytree(pipeline_run.out, out)
        return root / "cwd"
    write_tar(root / "sa_000000.tar", sa1b_members(1, 3))
    run_job(load_job({
        "inputs": [str(root / "sa_000000.tar")], "output": str(out), "shard_size": 2, "models_cache": models_cache,
        "caption": {"model": "tiny:llava", "max_new_tokens": 6}, "clip": {"model": "tiny:clip", "pretrained": "tiny:clip"},
        "ray": {"cpus_per_task": 0.25, "cpus_per_actor": 0.25},
    }), stream=open(os.devnull, "w"))
    return root / "cwd"


def test_the_readme_has_examples():
    assert len(python_examples()) >= 4


@pytest.mark.parametrize("number", range(len(python_examples())))
def test_readme_example_runs_as_printed(number, output_as_printed, monkeypatch):
    monkeypatch.chdir(output_as_printed)
    exec(compile(python_examples()[number], f"README.md example {number + 1}", "exec"), {"__name__": "readme"})
