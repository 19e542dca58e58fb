"""The names inside a training run folder (RUN_DIR) and inside the pipeline it exports.

RUN_DIR/
  log.jsonl                      one line per log_every steps, with its UTC time
  tensorboard/                   the same figures as TensorBoard event files
  checkpoints/step-NNNNNNN/      state.pt (rank 0), rng-rankR.pt (every rank)
  sampling/step-NNNNNNN/         images generated at that step
  pipeline/                      the diffusers PixArtAlphaPipeline (EMA weights), with
    transformer_raw/             the raw weights beside it, and
    train_job.json               the job they were trained with
"""
from __future__ import annotations

import re

LOG = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINTS = "checkpoints"
STEP_DIR = re.compile(r"^step-(\d{7})$")  # checkpoints/ and sampling/ name their folders by step
STATE = "state.pt"  # a checkpoint's model, EMA, optimiser, schedule and step
PIPELINE_DIR = "pipeline"
SAMPLING_DIR = "sampling"
RAW_TRANSFORMER = "transformer_raw"
TRAIN_JOB = "train_job.json"


def step_name(step: int) -> str:
    return f"step-{step:07d}"


def rng_file(rank: int) -> str:
    return f"rng-rank{rank}.pt"
