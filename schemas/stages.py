"""The stage registry: every pipeline stage, once, and what the rest of pixcap needs to know of it.

The graph, the actor pools, model resolution, revisions, the manifest, the fingerprint, progress
and the report read this table; none of them lists stages itself. Adding a scoring stage is its
file in stages/, its config class and one entry here, its columns in schemas/records.py, and its
tiny model.

A stage's class is named as "module:Class" and imported only where it runs (a Ray actor), so
reading the registry costs no torch import.
"""
from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass

from . import records as R
from .models import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED

# -- each stage's job keys ----------------------------------------------------------------------
# Besides its fields, a config says which of its keys change only speed (`speed_keys`: not part of
# an output's fingerprint), which numbers must be positive, and which keys take one of a few values
# (`choices`; a `backend` key's values are its stage's backends below).

DEFAULT_PROMPT = "Describe this image and its style in a very detailed manner"
POOL_SPEED_KEYS = ("batch_size", "actors", "gpus_per_actor")  # how an actor pool runs, never what it writes


class PoolConfig:
    """What an actor-pool stage's config says of its keys, unless it says otherwise."""
    speed_keys: typing.ClassVar[tuple] = POOL_SPEED_KEYS
    positive: typing.ClassVar[tuple] = ("batch_size", "actors")
    choices: typing.ClassVar[dict] = {}


@dataclass
class DecodeConfig:
    max_side: int = 1024  # longest side of the stored image; larger ones are re-encoded
    max_pixels: int = 100_000_000  # refused before a full decode (decompression bombs)
    max_file_bytes: int = 256 * 2**20  # a bigger file or tar member is refused unread (memory)
    min_side: int = 32  # shorter images are rejected as too_small
    max_aspect_ratio: float = 8.0  # long side / short side; beyond is rejected as bad_aspect
    model_side: int = 336  # short side of the RGB image handed to the models
    jpeg_quality: int = 95  # for re-encoded stored images

    speed_keys: typing.ClassVar[tuple] = ()
    positive: typing.ClassVar[tuple] = ("max_side", "max_pixels", "max_file_bytes", "model_side")
    choices: typing.ClassVar[dict] = {}


@dataclass
class CaptionConfig:
    # A caption backend (schemas/stages.py: CAPTION_BACKENDS): hf, LLaVA through transformers;
    # vllm, through vLLM's engine; sidecar, existing KEY.txt captions.
    backend: str = "hf"
    # Required where the backend runs a model: a path or a hub name (llava-hf/llava-1.5-7b-hf); tiny:llava,
    # the random test model, only where a job names it. No default: a forgotten key must not caption with babble.
    model: str = ""
    prompt: str = DEFAULT_PROMPT
    max_new_tokens: int = 120
    batch_size: int = 8
    actors: int = 1  # captioning actors; each loads the model once
    gpus_per_actor: float = 0.0  # > 0 asks Ray for GPUs and runs bf16 + SDPA on CUDA
    trust_remote_code: bool = False
    # hf: a static KV cache lets transformers compile the decoding step; auto takes it on CUDA,
    # where it is faster, and the dynamic cache on the CPU. Both give the same greedy captions.
    kv_cache: str = "auto"

    speed_keys: typing.ClassVar[tuple] = (*POOL_SPEED_KEYS, "kv_cache")
    positive: typing.ClassVar[tuple] = ("max_new_tokens", "batch_size", "actors")
    choices: typing.ClassVar[dict] = {"kv_cache": ("auto", "static", "dynamic")}  # backend: from the registry


@dataclass
class NounsConfig(PoolConfig):
    model: str = "en_core_web_sm"
    batch_size: int = 256
    actors: int = 1


@dataclass
class ClipConfig(PoolConfig):
    model: str = DEFAULT_CLIP_MODEL  # an open_clip name, a config JSON path, or tiny:clip (tests)
    pretrained: str = DEFAULT_CLIP_PRETRAINED  # an open_clip tag, a checkpoint path, or tiny:clip (tests)
    grounding_threshold: float = 0.2  # cosine of image and "a photo of a {noun}"
    batch_size: int = 32
    actors: int = 1
    gpus_per_actor: float = 0.0


@dataclass
class AestheticConfig(PoolConfig):
    # "" is off. Else LAION's improved aesthetic predictor as a state dict (a .pth loaded tensors
    # only, or .safetensors), e.g. sac+logos+ava1-l14-linearMSE.pth with clip ViT-L-14/openai;
    # or tiny:aesthetic (for tiny:clip). Scores the CLIP image embedding: stages/aesthetic.py.
    model: str = ""
    batch_size: int = 256
    actors: int = 1


@dataclass
class ControlConfig:
    # Control maps for a ControlNet, written beside each sample as KEY.<kind>.png (stages/control.py).
    # [] is off; "canny": Canny edges of the stored image (scikit-image; no weights).
    kinds: typing.List[str] = dataclasses.field(default_factory=list)
    canny_sigma: float = 2.0  # Gaussian blur before the gradient, in stored-image pixels
    # Hysteresis thresholds as quantiles of the image's gradient magnitude (scikit-image's use_quantiles):
    # the same share of pixels is edge in a dim photo as in a bright one.
    canny_low: float = 0.8
    canny_high: float = 0.9

    speed_keys: typing.ClassVar[tuple] = ()
    positive: typing.ClassVar[tuple] = ("canny_sigma",)
    choices: typing.ClassVar[dict] = {}


# -- the registry -------------------------------------------------------------------------------
TASK = "task"  # runs inside the per-part CPU task (read, decode, model inputs)
ACTORS = "actors"  # an actor pool: loads its model once, in __init__; GPUs where the job asks

# How a model key's name becomes a revision (output/revisions.py) and a path (models/resolve.py).
WEIGHTS = "weights"  # a folder or file of weights: a content hash locally, the hub's commit otherwise
WEIGHTS_FILE = "weights_file"  # as WEIGHTS, and it must resolve to one file
OPEN_CLIP_CONFIG = "open_clip_config"  # an open_clip model name, or a config JSON path
OPEN_CLIP_CHECKPOINT = "open_clip_checkpoint"  # an open_clip pretrained tag, or a checkpoint path
SPACY = "spacy"  # a spaCy pipeline package: its version


@dataclass(frozen=True)
class ModelKey:
    key: str  # the config field that names the model
    kind: str  # WEIGHTS, WEIGHTS_FILE, OPEN_CLIP_CONFIG, OPEN_CLIP_CHECKPOINT or SPACY
    hint: str = ""  # what a wrong name should have been, for the error line
    example: str = ""  # a real model for this key, for the error line of a job that names none


@dataclass(frozen=True)
class Backend:
    """One way a stage can do its work, chosen by the config's `backend` key."""
    stage: str  # "module:Class"
    runs_model: bool = True  # False: its model keys are ignored, and it asks for no GPU
    reads_captions: bool = False  # the read stage must keep the inputs' caption sidecars


@dataclass(frozen=True)
class StageSpec:
    name: str  # the job key of its config, its progress counter and its reject rows' stage
    kind: str  # TASK or ACTORS
    config: typing.Optional[type] = None
    stage: str = ""  # "module:Class"; "" where `backends` choose it
    backends: typing.Mapping[str, Backend] = dataclasses.field(default_factory=dict)
    model_keys: typing.Tuple[ModelKey, ...] = ()
    gpu_key: str = ""  # the config field with the GPUs per actor ("" for a CPU-only stage)
    columns: typing.Tuple[str, ...] = ()  # the record columns it adds
    optional: bool = False  # off unless its first model key names a model
    counted: bool = True  # shown with its count in the progress line

    def backend(self, config) -> typing.Optional[Backend]:
        return self.backends[config.backend] if self.backends else None

    def enabled(self, job) -> bool:
        return not self.optional or bool(getattr(self.config_of(job), self.model_keys[0].key))

    def config_of(self, job):
        return getattr(job, self.name)

    def runs_model(self, config) -> bool:
        backend = self.backend(config)
        return bool(self.model_keys) and (backend is None or backend.runs_model)

    def stage_class(self, config) -> type:
        """The stage class for this config (imported now: only where the stage runs)."""
        backend = self.backend(config)
        module, _, name = (backend.stage if backend else self.stage).partition(":")
        return getattr(importlib.import_module(module), name)

    def gpus(self, config) -> float:
        return float(getattr(config, self.gpu_key)) if self.gpu_key and self.runs_model(config) else 0.0


CAPTION_BACKENDS = {
    "hf": Backend("pixcap.stages.caption:CaptionStage"),
    "vllm": Backend("pixcap.stages.caption_vllm:VllmCaptionStage"),
    "sidecar": Backend("pixcap.stages.caption:SidecarCaptionStage", runs_model=False, reads_captions=True),
}

STAGES: typing.Tuple[StageSpec, ...] = (
    StageSpec("read", TASK, stage="pixcap.stages.read:ReadStage"),
    StageSpec("decode", TASK, DecodeConfig, stage="pixcap.stages.decode:DecodeStage",
              columns=(R.SHA256, R.FORMAT, R.WIDTH, R.HEIGHT, R.ORIG_WIDTH, R.ORIG_HEIGHT, R.PASSTHROUGH)),
    StageSpec("model_inputs", TASK, stage="pixcap.stages.model_inputs:ModelInputsStage", counted=False),
    StageSpec("caption", ACTORS, CaptionConfig, backends=CAPTION_BACKENDS,
              model_keys=(ModelKey("model", WEIGHTS, example="llava-hf/llava-1.5-7b-hf"),), gpu_key="gpus_per_actor",
              columns=(R.CAPTION, R.CAPTION_MODEL)),
    StageSpec("nouns", ACTORS, NounsConfig, stage="pixcap.stages.nouns:NounsStage",
              model_keys=(ModelKey("model", SPACY),), columns=(R.NOUNS, R.N_NOUNS)),
    StageSpec("clip", ACTORS, ClipConfig, stage="pixcap.stages.clip:ClipStage",
              model_keys=(ModelKey("model", OPEN_CLIP_CONFIG), ModelKey("pretrained", OPEN_CLIP_CHECKPOINT)),
              gpu_key="gpus_per_actor", columns=(R.CLIP_SCORE, R.GROUNDED_NOUNS, R.N_GROUNDED, R.CLIP_MODEL)),
    StageSpec("aesthetic", ACTORS, AestheticConfig, stage="pixcap.stages.aesthetic:AestheticStage",
              model_keys=(ModelKey("model", WEIGHTS_FILE, "LAION's sac+logos+ava1-l14-linearMSE.pth, a .safetensors "
                                   "state dict, or tiny:aesthetic"),),
              columns=(R.AESTHETIC_SCORE,), optional=True),
)
BY_NAME = {spec.name: spec for spec in STAGES}


def configured() -> typing.List[StageSpec]:
    """The stages with job keys of their own, in order."""
    return [spec for spec in STAGES if spec.config is not None]


def model_stages(job) -> typing.List[StageSpec]:
    """The actor-pool stages this job runs, in order (an optional stage only when it is on)."""
    return [spec for spec in STAGES if spec.kind == ACTORS and spec.enabled(job)]


def reads_captions(job) -> bool:
    """Whether a stage of the job takes the inputs' existing captions (the read stage keeps them)."""
    return any(spec.backend(spec.config_of(job)).reads_captions for spec in model_stages(job) if spec.backends)


def progress_stages(job) -> typing.Tuple[str, ...]:
    """The stages whose counts the progress line shows, in graph order."""
    return tuple(spec.name for spec in STAGES if spec.counted and (spec.kind == TASK or spec.enabled(job)))


def optional_columns() -> typing.Set[str]:
    """Record columns an output may lack: those of optional stages."""
    return {column for spec in STAGES if spec.optional for column in spec.columns}


def choices() -> typing.Dict[str, tuple]:
    """{dotted key: allowed values} of every stage's keys, backends included."""
    found = {}
    for spec in configured():
        if spec.backends:
            found[f"{spec.name}.backend"] = tuple(spec.backends)
        found.update({f"{spec.name}.{key}": values for key, values in spec.config.choices.items()})
    return found


def positive_keys() -> typing.Set[str]:
    return {f"{spec.name}.{key}" for spec in configured() for key in spec.config.positive}


def speed_keys() -> typing.Set[str]:
    """Dotted keys that change how fast a stage runs, never what it writes."""
    return {f"{spec.name}.{key}" for spec in configured() for key in spec.config.speed_keys}
