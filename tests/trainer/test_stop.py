"""SIGTERM to a training's whole process group (what Slurm and `timeout` send): the trainer
stops with its one line and exit code 143, its data-loader workers without a traceback, and
the rerun resumes from the last checkpoint."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from .shards_fixture import write_shards


@pytest.mark.slow
def test_sigterm_to_the_process_group_stops_training_in_one_line(tmp_path, tiny_trainer_models):
    shards = write_shards(tmp_path / "shards", n_shards=2, per_shard=4)
    run_dir = tmp_path / "run"
    job = {
        "shards": [str(p) for p in shards], "output": str(run_dir), "model": "tiny", "resolution": 256,
        "text_encoder": str(tiny_trainer_models["t5"]), "vae": str(tiny_trainer_models["vae"]),
        "max_steps": 100000, "batch_size": 2, "lr_scaling": "none", "shuffle_buffer": 4, "num_workers": 2,
        "checkpoint_every": 2, "log_every": 1, "sampling_prompts": [],
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    trainer = subprocess.Popen([sys.executable, "-m", "pixcap.cli.main", "train", str(tmp_path / "job.yaml")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    log = run_dir / "log.jsonl"
    deadline = time.monotonic() + 240
    while trainer.poll() is None and time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= 3:  # training, workers streaming
            break
        time.sleep(0.2)
    assert trainer.poll() is None, trainer.communicate()[1][-2000:]
    os.killpg(trainer.pid, signal.SIGTERM)
    _, stderr = trainer.communicate(timeout=120)
    assert trainer.returncode == 143, stderr[-3000:]
    assert "pixcap: stopped by SIGTERM; run the same command again to continue" in stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-3000:]

    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    job["max_steps"] = max(steps) + 2
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    resumed = subprocess.run([sys.executable, "-m", "pixcap.cli.main", "train", str(tmp_path / "job.yaml")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(log.read_text().splitlines()[-1])["step"] == job["max_steps"]
