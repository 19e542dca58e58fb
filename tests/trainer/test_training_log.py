"""The trainer's report per logging step: log.jsonl with a UTC time, one readable console line,
TensorBoard event files, and W&B only when asked for and installed."""
import datetime
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pixcap.cli.console import configure_console
from pixcap.schemas import JobError, load_train_job
from pixcap.trainer.training_log import TENSORBOARD_DIR, TrainingLog, check_wandb, console_line

ENTRIES = [
    {"step": 1, "loss": 0.5, "mse": 0.25, "lr": 2e-5, "steps_per_s": 3.0, "skipped": {}, "grad_norm": 1.5},
    {"step": 2, "loss": 0.375, "mse": 0.125, "lr": 4e-5, "steps_per_s": 2.5, "skipped": {"too_small": 2}},
]


def test_each_step_goes_to_the_jsonl_the_console_and_tensorboard(tmp_path, capsys):
    configure_console()
    job = load_train_job({"max_steps": 10})
    log = TrainingLog(job, tmp_path, step=0)
    before = datetime.datetime.now(datetime.timezone.utc)
    for entry in ENTRIES:
        log.write(entry)
    log.close()

    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in line.items() if k != "time"} for line in lines] == ENTRIES
    times = [datetime.datetime.fromisoformat(line["time"]) for line in lines]
    assert all(t.utcoffset() == datetime.timedelta(0) and before - datetime.timedelta(seconds=1) <= t for t in times)

    assert capsys.readouterr().err.splitlines() == [
        "step 1/10  loss 0.5  mse 0.25  grad_norm 1.5  lr 2e-05  3.00 steps/s",
        "step 2/10  loss 0.375  mse 0.125  lr 4e-05  2.50 steps/s  skipped too_small 2",
    ]
    events = EventAccumulator(str(tmp_path / TENSORBOARD_DIR))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 0.5), (2, 0.375)]
    assert [(e.step, e.value) for e in events.Scalars("skipped/too_small")] == [(2, 2.0)]
    assert "train/grad_norm" in events.Tags()["scalars"]


def test_the_console_line_is_readable_not_json():
    line = console_line({"time": "t", **ENTRIES[0]}, 1000)
    assert line.startswith("step 1/1000  loss 0.5") and "{" not in line and "time" not in line


def test_wandb_is_used_only_when_asked_and_refused_where_not_installed():
    check_wandb(load_train_job({}))  # not asked: nothing needed
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(JobError, match="^wandb_project: demo asks for W&B, but the wandb package is not installed"):
            check_wandb(load_train_job({"wandb_project": "demo"}))
    else:
        check_wandb(load_train_job({"wandb_project": "demo"}))
