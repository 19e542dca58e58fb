"""The train job file: every key `pixcap train` accepts, its type and its default.

`load_train_job` validates a plain dict (from YAML, after --set overrides) with the same rules as
the pipeline job: unknown keys and wrong types are refused with a JobError naming the dotted key.
Where pixcap can do what PixArt-alpha's official training does, the default is the official choice.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field

from .buckets import BUCKETS
from .job import JobError, build_dataclass, check_values
from .models import DEFAULT_MODELS_CACHE, DEFAULT_T5, DEFAULT_TRANSFORMER_SIZE, DEFAULT_VAE, TRANSFORMER_SIZES

RESOLUTIONS = tuple(BUCKETS)  # 256, 512, 1024: PixArt's aspect-ratio bucket tables exist for these
MODEL_SIZES = tuple(TRANSFORMER_SIZES)
MIXED_PRECISION = ("bf16", "no")
# square: short side resized, centre-cropped (PixArt's 256 px stages, multi_scale=False);
# aspect: the nearest-ratio bucket of PixArt's table (its 512 and 1024 multi-scale stages).
BUCKET_MODES = ("square", "aspect")
# PixArt's auto_lr: lr x sqrt(global batch / 256) (its configs' rule), or x global batch / 256.
LR_SCALING = ("sqrt", "linear", "none")
LR_BASE_BATCH = 256
# official: as PixArt's train.py runs under accelerate, which steps the scheduler once per process each
# iteration, so warm-up ends after warmup_steps / ranks optimiser steps; literal: after warmup_steps of them.
WARMUP_MODES = ("official", "literal")
# The scheduler of the sampling during training and of `pixcap sample`: PixArt's inference.py offers both.
SAMPLERS = ("dpm-solver", "sa-solver")
DEFAULT_SAMPLING_PROMPTS = ["a red house under a blue sky", "a photo of a cat on the grass"]
# What is trained: none (every weight of the transformer), lora (peft adapters, the base frozen) or
# controlnet (PixArt's ControlNet-Transformer beside the frozen base).
ADAPTERS = ("none", "lora", "controlnet")
# diffusers' names of the attention (self and cross) and feed-forward projections of every block.
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]
LORA_INITS = ("gaussian", "kaiming")  # peft's init_lora_weights: "gaussian" (the official script's) or True
MEMBER_NAME = re.compile(r"^[a-z0-9_]+$")  # a control map's shard member is KEY.<name>.png


@dataclass
class FilterConfig:
    """Keep a sample only if its KEY.json passes every filter that is set (None: off)."""

    min_clip_score: typing.Optional[float] = None
    min_n_nouns: typing.Optional[int] = None
    min_n_grounded: typing.Optional[int] = None
    min_aesthetic_score: typing.Optional[float] = None  # needs the pipeline's aesthetic stage (null otherwise: fails)
    max_aspect_ratio: typing.Optional[float] = None  # long side / short side of the stored image
    min_side: typing.Optional[int] = None  # shorter side of the stored image, pixels
    # {column: threshold}: keep a sample only if each column is at most its threshold, e.g. the pipeline's
    # classifiers' {nsfw_score: 0.5, watermark_score: 0.5}; a sample without the column fails.
    max_scores: dict = field(default_factory=dict)


@dataclass
class LoraSettings:
    """adapter: lora. peft's LoraConfig on the transformer; PixArt's official LoRA script's defaults."""

    rank: int = 16
    alpha: float = 8.0  # the update is scaled by alpha / rank; 8 is peft's default, which the official script keeps
    targets: typing.List[str] = field(default_factory=lambda: list(LORA_TARGETS))  # module names (or name suffixes)
    dropout: float = 0.0
    init: str = "gaussian"


@dataclass
class ControlNetSettings:
    """adapter: controlnet. PixArt-alpha's ControlNet-Transformer (the paper's N = 13 copied blocks)."""

    blocks: int = 13  # trainable copies of the transformer's first blocks; fewer than its num_layers
    control: str = "canny"  # the shard member KEY.<control>.png that holds the control map
    sampling_controls: typing.List[str] = field(default_factory=list)  # one control image per sampling prompt


@dataclass
class PriorSettings:
    """DreamBooth's prior preservation: class images (from the base model) trained beside the instance images."""

    class_shards: typing.List[str] = field(default_factory=list)  # [] = off
    loss_weight: float = 1.0  # the class batch's loss is added with this weight


@dataclass
class TrainJob:
    shards: typing.List[str] = field(default_factory=list)  # paths, globs, file://, fsspec URLs, pipe:
    output: str = ""  # RUN_DIR: checkpoints/, pipeline/, sampling/, log.jsonl
    model: str = DEFAULT_TRANSFORMER_SIZE  # XL-2 | tiny (tests); never a tiny default
    resolution: int = 256  # 256 | 512 | 1024; the model's base size (1024 adds micro-conditions)
    buckets: str = "square"  # square | aspect (see BUCKET_MODES)
    bucket_tables: typing.List[int] = field(default_factory=list)  # aspect: tables to draw from; [] = [resolution]
    load_from: typing.Optional[str] = None  # a PixArt transformer, pipeline or checkpoint folder (convert-dit for DiT)
    load_ema: bool = False  # load_from's EMA weights instead of its raw ones (PixArt's load_ema)
    text_encoder: str = DEFAULT_T5  # T5 folder, hub id, PixArt pipeline, or tiny:t5 (tests)
    vae: str = DEFAULT_VAE  # AutoencoderKL folder, hub id, PixArt pipeline, or tiny:vae (tests)
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
    warmup_mode: str = "official"  # official | literal (see WARMUP_MODES)
    grad_clip: float = 1.0  # max grad norm; 0 = off
    ema_decay: float = 0.9999
    mixed_precision: str = "bf16"  # bf16 autocast on CUDA; CPU always runs float32
    gradient_checkpointing: bool = False
    caption_dropout: float = 0.1  # probability a caption becomes the null caption
    # Which caption of a sample of several captioners to train on (trainer/caption_choice.py): {} KEY.txt,
    # the primary; {captioner: long}; {proportions: {long: 0.5, short: 0.5}}; {clip_score: 0.1}, Sana's
    # CLIP-score sampling at that temperature. Drawn per sample from the seed, so resume is exact.
    caption_choice: dict = field(default_factory=dict)
    shuffle_buffer: int = 1000  # samples, per data-loader worker
    num_workers: int = 4  # data-loader workers per rank
    seed: int = 0
    checkpoint_every: int = 1000  # also the data segment length: the stream is reseeded at these steps
    log_every: int = 10
    sampling_every: int = 0  # steps between image grids; 0 = only after the last step
    sampling_prompts: typing.List[str] = field(default_factory=lambda: list(DEFAULT_SAMPLING_PROMPTS))
    sampling_steps: int = 20
    sampling_scheduler: str = "dpm-solver"  # dpm-solver | sa-solver (see SAMPLERS)
    # Besides log.jsonl and TensorBoard's event files (RUN_DIR/tensorboard): a W&B project to log to,
    # where the wandb package is installed; None: W&B is not used.
    wandb_project: typing.Optional[str] = None
    filters: FilterConfig = field(default_factory=FilterConfig)
    adapter: str = "none"  # none | lora | controlnet (see ADAPTERS)
    lora: LoraSettings = field(default_factory=LoraSettings)
    controlnet: ControlNetSettings = field(default_factory=ControlNetSettings)
    prior: PriorSettings = field(default_factory=PriorSettings)

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

    def warmup_factor(self, step: int, world_size: int) -> float:
        """The factor on lr for optimiser step `step` (0-based): linear warm-up, then 1. The first step
        trains (the official schedule starts at 0); official mode advances world_size scheduler steps a step."""
        per_step = world_size if self.warmup_mode == "official" else 1
        return min(1.0, (step + 1) * per_step / max(1, self.warmup_steps))


CHOICES = {"model": MODEL_SIZES, "resolution": RESOLUTIONS, "mixed_precision": MIXED_PRECISION,
           "buckets": BUCKET_MODES, "lr_scaling": LR_SCALING, "adapter": ADAPTERS, "lora.init": LORA_INITS,
           "warmup_mode": WARMUP_MODES, "sampling_scheduler": SAMPLERS}
POSITIVE = {"max_steps", "batch_size", "lr", "checkpoint_every", "log_every", "sampling_steps",
            "lora.rank", "lora.alpha", "controlnet.blocks"}
NON_NEGATIVE = {"weight_decay", "eps", "warmup_steps", "grad_clip", "shuffle_buffer", "num_workers", "sampling_every",
                "prior.loss_weight"}


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
    check_caption_choice(job.caption_choice)
    if job.filters.max_aspect_ratio is not None and job.filters.max_aspect_ratio < 1.0:
        raise JobError(f"filters.max_aspect_ratio: must be at least 1, got {job.filters.max_aspect_ratio}")
    for column, threshold in job.filters.max_scores.items():
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold):
            raise JobError(f"filters.max_scores.{column}: must be a finite number, got {threshold!r}")
    check_adapter(job)
    return job


def check_caption_choice(choice: dict) -> None:
    """One of {}, {captioner: NAME}, {proportions: {NAME: weight}}, {clip_score: temperature}."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    forms = "{captioner: NAME}, {proportions: {NAME: weight, ...}} or {clip_score: temperature}"
    if not choice:
        return
    if len(choice) != 1:
        raise JobError(f"caption_choice: give one of {forms}, got {choice!r}"[:300])
    (kind, value), = choice.items()
    if kind == "captioner" and isinstance(value, str) and value:
        return
    if kind == "proportions" and isinstance(value, dict) and value and all(
            isinstance(k, str) and number(v) and v >= 0 for k, v in value.items()) and sum(value.values()) > 0:
        return
    if kind == "clip_score" and number(value) and value > 0:
        return
    raise JobError(f"caption_choice: give one of {forms} (weights >= 0, a temperature > 0), got {choice!r}"[:300])


def check_adapter(job: TrainJob) -> None:
    """Refuse LoRA, ControlNet and prior-preservation settings that cannot work, before anything loads."""
    if not 0.0 <= job.lora.dropout < 1.0:
        raise JobError(f"lora.dropout: must be in [0, 1), got {job.lora.dropout}")
    if not job.lora.targets or not all(isinstance(t, str) and t.strip() for t in job.lora.targets):
        raise JobError(f"lora.targets: must list module names such as {', '.join(LORA_TARGETS)}, got {job.lora.targets!r}")
    if not MEMBER_NAME.match(job.controlnet.control):
        raise JobError(f"controlnet.control: a member name of lowercase letters, digits and _ (KEY.<control>.png), "
                       f"got {job.controlnet.control!r}")
    layers = TRANSFORMER_SIZES[job.model]["num_layers"] if job.model in TRANSFORMER_SIZES else None
    if job.adapter == "controlnet":
        # Copy i feeds block i + 1, so at least one block of the base must follow the copies.
        if layers is not None and job.controlnet.blocks >= layers:
            raise JobError(f"controlnet.blocks: must be below the {job.model} transformer's {layers} blocks, "
                           f"got {job.controlnet.blocks}")
        if job.gradient_checkpointing:
            raise JobError("gradient_checkpointing: not supported with adapter: controlnet")
        if job.sampling_prompts and len(job.controlnet.sampling_controls) != len(job.sampling_prompts):
            raise JobError(f"controlnet.sampling_controls: give one control image per sampling prompt "
                           f"({len(job.sampling_prompts)}), got {len(job.controlnet.sampling_controls)}")
    elif job.controlnet.sampling_controls:
        raise JobError("controlnet.sampling_controls: only for adapter: controlnet")
    if job.prior.class_shards:
        if job.buckets != "square":
            # Instance and class images share each step's batch, so they must share its size.
            raise JobError("prior.class_shards: prior preservation needs buckets: square")
        if job.adapter == "controlnet":
            raise JobError("prior.class_shards: prior preservation is for adapter: none or lora")
