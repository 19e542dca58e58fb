"""Preemption and pipes: SIGTERM (what Slurm and Kubernetes send) stops a run promptly, releases
the output lock, says so in one line and exits 143, before and after Ray has started; the next
run continues the job. A reader that goes away (`pixcap stats OUT | head`) ends pixcap quietly.

Real signals to a real `pixcap run` in a subprocess, with a Ray of its own.
"""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from pixcap.cli.main import STOPPED
from pixcap.schemas.manifest import FRAGMENTS_DIR, LOCK_NAME, WORK_DIR

from .synthetic_stats import write_stats
from .tarfiles import sa1b_members, write_tar

CLI = [sys.executable, "-m", "pixcap.cli.main"]


def start_run(tmp_path, models_cache, images: int = 24, max_new_tokens: int = 24) -> psutil.Popen:
    (tmp_path / "in").mkdir(exist_ok=True)
    for t in range(2):
        write_tar(tmp_path / "in" / f"sa_{t:06d}.tar", sa1b_members(1 + t * images // 2, images // 2))
    job = {"inputs": [str(tmp_path / "in")], "output": str(tmp_path / "out"), "shard_size": 4,
           "models_cache": models_cache, "progress_seconds": 1.0,
           "caption": {"model": "tiny:llava", "max_new_tokens": max_new_tokens, "batch_size": 2},
           "clip": {"model": "tiny:clip", "pretrained": "tiny:clip", "grounding_threshold": 0.0},
           "ray": {"cpus_per_actor": 0.25, "cpus_per_task": 0.5}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return psutil.Popen([*CLI, "run", str(tmp_path / "job.yaml")], env={**env, "TOKENIZERS_PARALLELISM": "false"},
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def terminate(process) -> tuple:
    """SIGTERM; returns (exit code, stderr, seconds to exit, processes of the run still alive)."""
    family = [process] + process.children(recursive=True)
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    seconds = time.monotonic() - start
    _, left = psutil.wait_procs(family, timeout=30)  # Ray's workers follow their raylet down
    return process.returncode, err, seconds, [p for p in left if p.status() != psutil.STATUS_ZOMBIE]


def assert_stopped(tmp_path, code, err, seconds, left) -> None:
    assert code == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == STOPPED, err[-3000:]
    assert seconds < 30, f"{seconds:.1f} s"
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    assert left == [], left


def finish_and_check(tmp_path, images: int) -> None:
    """The same command again completes the job."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run([*CLI, "run", str(tmp_path / "job.yaml")], capture_output=True, text=True, timeout=600,
                            env={**env, "TOKENIZERS_PARALLELISM": "false"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"inputs {images} = written {images} + rejected 0" in result.stdout
    totals = json.loads((tmp_path / "out" / "manifest.json").read_text())["totals"]
    assert totals["inputs"] == totals["written"] == images


@pytest.mark.slow
def test_sigterm_before_ray_starts_releases_the_lock_and_says_so(tmp_path, models_cache, ray_subprocess):
    run = start_run(tmp_path, models_cache)
    wait_for(lambda: (tmp_path / "out" / LOCK_NAME).exists(), run)  # locked; Ray takes seconds more
    code, err, seconds, left = terminate(run)
    assert_stopped(tmp_path, code, err, seconds, left)
    print(f"SIGTERM before Ray: exit {code} in {seconds:.1f} s")
    finish_and_check(tmp_path, 24)


@pytest.mark.slow
def test_sigterm_while_captioning_stops_promptly_and_the_next_run_continues(tmp_path, models_cache, ray_subprocess):
    run = start_run(tmp_path, models_cache)
    fragments = tmp_path / "out" / WORK_DIR / FRAGMENTS_DIR
    wait_for(lambda: fragments.is_dir() and any(fragments.iterdir()), run)  # Ray runs, rows are finishing
    code, err, seconds, left = terminate(run)
    assert_stopped(tmp_path, code, err, seconds, left)
    assert "SIGTERM received" not in err and "Aborted" not in err  # no native stack from Ray's handler
    print(f"SIGTERM while captioning: exit {code} in {seconds:.1f} s")
    finish_and_check(tmp_path, 24)


@pytest.mark.parametrize("argv", [["stats", "{out}"], ["stats", "{out}", "--json"]])
def test_a_reader_that_goes_away_ends_pixcap_quietly(tmp_path, argv):
    write_stats(tmp_path / "out", rows=1000, files=2)
    command = " ".join([*CLI, *(a.format(out=tmp_path / "out") for a in argv)])
    # `true` exits at once without reading: every write pixcap makes meets a closed pipe.
    result = subprocess.run(["bash", "-c", f"{command} | true; echo ${{PIPESTATUS[0]}}"],
                            capture_output=True, text=True, timeout=120)
    assert result.stderr == ""
    assert result.stdout.strip() == "141"
