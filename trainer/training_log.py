"""What the trainer reports at each logging step, and where.

- RUN_DIR/log.jsonl: one JSON line per logging step, with its UTC time (`time`, ISO 8601);
- the console: one readable line through the `pixcap` logger (`pixcap --quiet` hides it);
- RUN_DIR/tensorboard/: TensorBoard event files (`tensorboard --logdir RUN_DIR/tensorboard`);
- W&B, only where the job names `wandb_project` (and the wandb package is installed: it is not a
  dependency of pixcap).
Only rank 0 reports.
"""
from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

from pixcap.schemas import JobError
from pixcap.schemas.train_job import TrainJob

from .run_folder import LOG, TENSORBOARD_DIR

logger = logging.getLogger(__name__)


def quiet_libraries() -> None:
    """No loading bars from diffusers and transformers on the console: pixcap's lines say what happens."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_progress_bar()
        library.set_verbosity_error()


def check_wandb(job: TrainJob) -> None:
    """A job that asks for W&B where wandb is not installed is refused before any step."""
    if job.wandb_project:
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            raise JobError(f"wandb_project: {job.wandb_project} asks for W&B, but the wandb package is not"
                           " installed (pip install wandb), or leave wandb_project out")


def console_line(entry: dict, max_steps: int) -> str:
    """`step 10/1000  loss 0.1234  lr 2e-05  grad_norm 0.52  3.1 steps/s`, skipped samples last."""
    skip = {"time", "step", "lr", "steps_per_s", "skipped"}
    parts = [f"step {entry['step']}/{max_steps}"]
    parts += [f"{key} {value:.4g}" for key, value in entry.items() if key not in skip and isinstance(value, float)]
    parts += [f"lr {entry['lr']:.3g}", f"{entry['steps_per_s']:.2f} steps/s"]
    if entry.get("skipped"):
        parts.append("skipped " + ", ".join(f"{reason} {n}" for reason, n in sorted(entry["skipped"].items())))
    return "  ".join(parts)


class TrainingLog:
    """log.jsonl, the console, TensorBoard and (asked for) W&B, for rank 0 of one run."""

    def __init__(self, job: TrainJob, run_dir: Path, step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.path, self.max_steps = run_dir / LOG, job.max_steps
        # purge_step: a resumed run drops the events a killed one wrote past its checkpoint, as it redoes those steps
        self.tensorboard = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=step or None)
        self.wandb = None
        if job.wandb_project:
            import wandb

            self.wandb = wandb.init(project=job.wandb_project, dir=str(run_dir), config=job.to_dict(),
                                    name=run_dir.name, resume="allow")

    def write(self, entry: dict) -> None:
        entry = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"), **entry}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        logger.info(console_line(entry, self.max_steps))
        step = entry["step"]
        scalars = {f"train/{key}": value for key, value in entry.items() if isinstance(value, float)}
        scalars.update({f"skipped/{reason}": n for reason, n in entry.get("skipped", {}).items()})
        for tag, value in scalars.items():
            self.tensorboard.add_scalar(tag, value, step)
        self.tensorboard.flush()  # a killed run keeps what it logged
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def close(self) -> None:
        self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()
