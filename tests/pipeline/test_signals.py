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
from typing import NamedTuple

import psutil
import pytest
import yaml

from pixcap.cli.main import STOPPED
from pixcap.schemas.manifest import FRAGMENTS_DIR, LOCK_NAME, WORK_DIR

from .synthetic_stats import write_stats
from .tarfiles import sa1b_members, write_tar

CLI = [sys.executable, "-m", "pixcap.cli.main"]


IMAGES = 24


def write_job(tmp_path, models_cache) -> None:
    """Two SA-1B tars of IMAGES images in all, and TMP/job.yaml over them (its own Ray)."""
    (tmp_path / "in").mkdir(exist_ok=True)
    for t in range(2):
        write_tar(tmp_path / "in" / f"sa_{t:06d}.tar", sa1b_members(1 + t * IMAGES // 2, IMAGES // 2))
    job = {"inputs": [str(tmp_path / "in")], "output": str(tmp_path / "out"), "shard_size": 4,
           "models_cache": models_cache, "progress_seconds": 1.0,
           "caption": {"model": "tiny:llava", "max_new_tokens": 24, "batch_size": 2},
           "clip": {"model": "tiny:clip", "pretrained": "tiny:clip", "grounding_threshold": 0.0},
           "ray": {"cpus_per_actor": 0.25, "cpus_per_task": 0.5}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))


def start_run(tmp_path) -> psutil.Popen:
    """`pixcap run TMP/job.yaml`, as a user types it (no RAY_ADDRESS: a Ray of its own)."""
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


class Stopped(NamedTuple):
    code: int
    err: str
    seconds: float  # from the SIGTERM to the exit
    left: list  # processes of the run still alive after it
    locked: bool  # the output lock still there after the exit


def stop(tmp_path, run) -> Stopped:
    code, err, seconds, left = terminate(run)
    return Stopped(code, err, seconds, left, (tmp_path / "out" / LOCK_NAME).exists())


def assert_stopped(stopped: Stopped) -> None:
    assert stopped.code == 143, stopped.err[-3000:]
    assert stopped.err.strip().splitlines()[-1] == STOPPED, stopped.err[-3000:]
    assert stopped.seconds < 30, f"{stopped.seconds:.1f} s"
    assert not stopped.locked
    assert stopped.left == [], stopped.left


class Preempted(NamedTuple):
    before_ray: Stopped
    while_captioning: Stopped
    finished: subprocess.CompletedProcess  # the same command a third time
    totals: dict  # the manifest's, after it


@pytest.fixture(scope="module")
def preempted(tmp_path_factory, models_cache, ray_subprocess) -> Preempted:
    """One job preempted as a scheduler does it, twice, then run to its end: a SIGTERM once the
    output is locked but before Ray has started, then (the same command again) a SIGTERM while
    rows are being captioned, then the same command a third time. A run with a Ray of its own
    costs 20-30 s; the two stops share the finishing run."""
    tmp_path = tmp_path_factory.mktemp("preempted")
    write_job(tmp_path, models_cache)
    run = start_run(tmp_path)
    wait_for(lambda: (tmp_path / "out" / LOCK_NAME).exists(), run)  # locked; Ray takes seconds more
    before_ray = stop(tmp_path, run)
    run = start_run(tmp_path)
    fragments = tmp_path / "out" / WORK_DIR / FRAGMENTS_DIR
    wait_for(lambda: fragments.is_dir() and any(fragments.iterdir()), run)  # Ray runs, rows are finishing
    while_captioning = stop(tmp_path, run)
    run = start_run(tmp_path)
    try:
        out, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:  # timed out: not left running after the tests
            run.kill()
    finished = subprocess.CompletedProcess(run.args, run.returncode, out, err)
    manifest = tmp_path / "out" / "manifest.json"
    totals = json.loads(manifest.read_text())["totals"] if manifest.exists() else {}
    return Preempted(before_ray, while_captioning, finished, totals)


@pytest.mark.slow
def test_sigterm_before_ray_starts_releases_the_lock_and_says_so(preempted):
    assert_stopped(preempted.before_ray)
    print(f"SIGTERM before Ray: exit {preempted.before_ray.code} in {preempted.before_ray.seconds:.1f} s")


@pytest.mark.slow
def test_sigterm_while_captioning_stops_promptly(preempted):
    stopped = preempted.while_captioning
    assert_stopped(stopped)
    assert "SIGTERM received" not in stopped.err and "Aborted" not in stopped.err  # no native stack from Ray's handler
    print(f"SIGTERM while captioning: exit {stopped.code} in {stopped.seconds:.1f} s")


@pytest.mark.slow
def test_the_next_run_after_each_sigterm_continues_the_job(preempted):
    """The run after the first SIGTERM got as far as captioning (the fixture waited for its rows);
    the one after the second finishes the job, every input written once."""
    assert preempted.finished.returncode == 0, preempted.finished.stderr[-3000:]
    assert f"inputs {IMAGES} = written {IMAGES} + rejected 0" in preempted.finished.stdout
    assert preempted.totals["inputs"] == preempted.totals["written"] == IMAGES


@pytest.mark.parametrize("argv", [["stats", "{out}"], ["stats", "{out}", "--json"]])
def test_a_reader_that_goes_away_ends_pixcap_quietly(tmp_path, argv):
    write_stats(tmp_path / "out", rows=1000, files=2)
    command = " ".join([*CLI, *(a.format(out=tmp_path / "out") for a in argv)])
    # `true` exits at once without reading: every write pixcap makes meets a closed pipe.
    result = subprocess.run(["bash", "-c", f"{command} | true; echo ${{PIPESTATUS[0]}}"],
                            capture_output=True, text=True, timeout=120)
    assert result.stderr == ""
    assert result.stdout.strip() == "141"
