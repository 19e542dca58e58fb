"""The train job file: every key `pixcap train` accepts, its type and its default.

`load_train_job` validates a plain dict (from YAML, after --set overrides) with the same rules as
the pipeline job: unknown keys and wrong types are refused with a JobError naming the dotted key.
Where pixcap can do what PixArt-alpha's official training does, the default is the official choice.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field

from .buckets import BUCKETS
from .job import JobError, build_dataclass, check_values
from .models import DEFAULT_MODELS_CACHE, TINY_T5, TINY_VAE, TRANSFORMER_SIZES

RESOLUTIONS = tuple(BUCKETS)  # 256, 512, 1024: PixArt's aspect-ratio bucket tables exist for these
MODEL_SIZES = tuple(TRANSFORMER_SIZES)
MIXED_PRECISION = ("bf16", "no")
# square: short side resized, centre-cropped (PixArt's 256 px stages, multi_scale=False);
# aspect: the nearest-ratio bucket of PixArt's table (its 512 and 1024 multi-scale stages).
BUCKET_MODES = ("square", "aspect")
# PixArt's auto_lr: lr x sqrt(global batch / 256) (its configs' rule), or x global batch / 256.
LR_SCALING = ("sqrt", "linear", "none")
LR_BASE_BATCH = 256
DEFAULT_SAMPLING_PROMPTS = ["a red house under a blue sky", "a photo of a cat on the grass"]


@dataclass
class FilterConfig:
    """Keep a sample only if its KEY.json passes every filter that is set (None: off)."""

    min_clip_score: typing.Optional[float] = None
    min_n_nouns: typing.Optional[int] = None
    min_n_grounded: typing.Optional[int] = None
    min_aesthetic_score: typing.Optional[float] = None  # needs the pipeline's aesthetic stage (null otherwise: fails)
    max_aspect_ratio: typing.Optional[float] = None  # long side / short side of the stored image
    min_side: typing.Optional[int] = None  # shorter side of the stored image, pixels


@dataclass
class TrainJob:
    shards: typing.List[str] = field(default_factory=list)  # paths, globs, file://, fsspec URLs, pipe:
    output: str = ""  # RUN_DIR: checkpoints/, pipeline/, sampling/, log.jsonl
    model: str = "tiny"  # tiny | XL-2
    resolution: int = 256  # 256 | 512 | 1024; the model's base size (1024 adds micro-conditions)
    buckets: str = "square"  # square | aspect (see BUCKET_MODES)
    bucket_tables: typing.List[int] = field(default_factory=list)  # aspect: tables to draw from; [] = [resolution]
    load_from: typing.Optional[str] = None  # a PixArt transformer, pipeline or checkpoint folder (convert-dit for DiT)
    load_ema: bool = False  # load_from's EMA weights instead of its raw ones (PixArt's load_ema)
    text_encoder: str = TINY_T5  # T5 folder, hub id, or tiny:t5
    vae: str = TINY_VAE  # AutoencoderKL folder, hub id, or tiny:vae
    models_cache: str = DEFAULT_MODELS_CACHE  # where tiny:* models are built
    null_caption: typing.Optional[str] = None  # pixcap encode's null_caption.npz; None: beside the shards
    clean_captions: bool = True  # PixArt's T5 caption cleaning (diffusers' clean_caption) before T5
    max_steps: int = 1000
    batch_size: int = 8  # per rank
    lr: float = 2e-5  # before lr_scaling
    lr_scaling: str = "sqrt"  # sqrt | linear | none, by global batch (batch_size x ranks) / 256
    weight_decay: float = 3e-2
    eps: float = 1e-10
    warmup_steps: int = 1000
    grad_clip: float = 1.0  # max grad norm; 0 = off
    ema_decay: float = 0.9999
    mixed_precision: str = "bf16"  # bf16 autocast on CUDA; CPU always runs float32
    gradient_checkpointing: bool = False
    caption_dropout: float = 0.1  # probability a caption becomes the null caption
    shuffle_buffer: int = 1000  # samples, per data-loader worker
    num_workers: int = 4  # data-loader workers per rank
    seed: int = 0
    checkpoint_every: int = 1000  # also the data segment length: the stream is reseeded at these steps
    log_every: int = 10
    sampling_every: int = 0  # steps between image grids; 0 = only after the last step
    sampling_prompts: typing.List[str] = field(default_factory=lambda: list(DEFAULT_SAMPLING_PROMPTS))
    sampling_steps: int = 20
    filters: FilterConfig = field(default_factory=FilterConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def resolutions(self) -> typing.List[int]:
        """The bucket tables images are fitted to (square mode: only `resolution`)."""
        return list(self.bucket_tables) or [self.resolution]

    def lr_scale(self, world_size: int) -> float:
        """The factor lr_scaling applies to lr for this job's global batch on `world_size` ranks."""
        ratio = self.batch_size * world_size / LR_BASE_BATCH
        return {"sqrt": math.sqrt(ratio), "linear": ratio, "none": 1.0}[self.lr_scaling]


CHOICES = {"model": MODEL_SIZES, "resolution": RESOLUTIONS, "mixed_precision": MIXED_PRECISION,
           "buckets": BUCKET_MODES, "lr_scaling": LR_SCALING}
POSITIVE = {"max_steps", "batch_size", "lr", "checkpoint_every", "log_every", "sampling_steps"}
NON_NEGATIVE = {"weight_decay", "eps", "warmup_steps", "grad_clip", "shuffle_buffer", "num_workers", "sampling_every"}


def load_train_job(data: dict) -> TrainJob:
    """Validate a train job dict and fill in defaults."""
    job = build_dataclass(TrainJob, data or {}, "")
    check_values(job, CHOICES, POSITIVE, NON_NEGATIVE)
    for i, res in enumerate(job.bucket_tables):
        if res not in RESOLUTIONS:
            raise JobError(f"bucket_tables[{i}]: must be one of {', '.join(map(str, RESOLUTIONS))}, got {res!r}")
    if job.bucket_tables and job.buckets == "square":
        raise JobError("bucket_tables: square mode fits every image to resolution; set buckets: aspect to use tables")
    if not 0.0 <= job.ema_decay < 1.0:
        raise JobError(f"ema_decay: must be in [0, 1), got {job.ema_decay}")
    if not 0.0 <= job.caption_dropout <= 1.0:
        raise JobError(f"caption_dropout: must be in [0, 1], got {job.caption_dropout}")
    if job.filters.max_aspect_ratio is not None and job.filters.max_aspect_ratio < 1.0:
        raise JobError(f"filters.max_aspect_ratio: must be at least 1, got {job.filters.max_aspect_ratio}")
    return job
