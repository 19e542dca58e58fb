"""The stage registry: every pipeline stage, once, and what the rest of pixcap needs to know of it.

The graph, the actor pools, model resolution, revisions, the manifest, the fingerprint, progress
and the report read this table; none of them lists stages itself. Adding a scoring stage is its
file in stages/, its config class (schemas/stage_configs.py) and one entry here, its columns in
schemas/records.py, and its tiny model.

A stage's class is named as "module:Class" and imported only where it runs (a Ray actor), so
reading the registry costs no torch import.
"""
from __future__ import annotations

import dataclasses
import importlib
import string
import typing
from dataclasses import dataclass

from . import records as R
from .stage_configs import (  # noqa: F401 (the configs are part of the registry's API)
    CAPTIONER_NAME, COLUMN_NAME, DEFAULT_PROMPT, HF_BACKEND, POOL_SPEED_KEYS, QUOTE_SIDECAR, SIDECAR_BACKEND,
    VIEWS, VLLM_BACKEND, AestheticConfig, CaptionConfig,
    CaptionerConfig, ClassifierConfig, ClipConfig, ControlConfig, DecodeConfig, NounsConfig, PoolConfig, T5TokensConfig,
    ClipNsfwConfig,
)

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
    columns: typing.Tuple[str, ...] = ()  # the record columns it adds (of SAMPLE_SCHEMA)
    optional: bool = False  # off unless its first model key names a model (a listed stage: unless listed)
    counted: bool = True  # shown with its count in the progress line
    # A listed stage's job key is a list of configs, one instance of the stage each (its own actor pool),
    # named by this config field: `classifiers: [{column: nsfw_score, ...}, ...]`.
    listed: str = ""
    replaced_by: str = ""  # off where this listed stage lists any (`caption:` is one of `captioners:`)
    # Columns the job adds to the record, per instance: fields(config, job) -> [pa.Field].
    fields: typing.Optional[typing.Callable] = None
    # Keyword arguments its class takes besides the config: context(config, job) -> dict.
    context: typing.Optional[typing.Callable] = None
    # "module:function": check(resolved config) -> an error line or "", once its models are resolved.
    check: str = ""
    # An optional stage without a model: the config key that turns it on (a non-empty list or string).
    switch: str = ""
    # Shard members it makes beside the image, stored as blobs until the commit: members(config) ->
    # {member suffix: batch column of their bytes} (the control stage's {"canny.png": "control_canny"}).
    members: typing.Optional[typing.Callable] = None

    def backend(self, config) -> typing.Optional[Backend]:
        return self.backends[config.backend] if self.backends else None

    def enabled(self, job) -> bool:
        if self.replaced_by and getattr(job, self.replaced_by):
            return False
        if self.listed:
            return bool(getattr(job, self.name))
        return not self.optional or bool(getattr(self.config_of(job), self.switch or self.model_keys[0].key))

    def config_of(self, job):
        return getattr(job, self.name)

    def instances(self, job) -> typing.List["StageInstance"]:
        """Its instances in this job: one, or one per listed config ([] when it is off)."""
        if not self.enabled(job):
            return []
        configs = getattr(job, self.name) if self.listed else [self.config_of(job)]
        return [StageInstance(self, f"{self.name}.{getattr(c, self.listed)}" if self.listed else self.name, c,
                              self.context(c, job) if self.context else {}) for c in configs]

    def runs_model(self, config) -> bool:
        backend = self.backend(config)
        return bool(self.model_keys) and (backend is None or backend.runs_model)

    def stage_path(self, config) -> str:
        """"module:Class" of the stage class for this config."""
        backend = self.backend(config)
        return backend.stage if backend else self.stage

    def stage_class(self, config) -> type:
        """The stage class for this config (imported now: only where the stage runs)."""
        return imported(self.stage_path(config))

    def gpus(self, config) -> float:
        return float(getattr(config, self.gpu_key)) if self.gpu_key and self.runs_model(config) else 0.0


@dataclass(frozen=True)
class StageInstance:
    """One stage as a job runs it: its name (its progress counter, reject rows' stage, revision and
    manifest entry: "caption", "captioners.long", "classifiers.nsfw_score"), config and class arguments."""
    spec: StageSpec
    name: str
    config: typing.Any
    kwargs: typing.Mapping = dataclasses.field(default_factory=dict)

    def runs_model(self) -> bool:
        return self.spec.runs_model(self.config)

    def gpus(self) -> float:
        return self.spec.gpus(self.config)

    def stage_path(self) -> str:
        return self.spec.stage_path(self.config)

    def backend(self) -> typing.Optional[Backend]:
        return self.spec.backend(self.config)


def imported(name: str):
    """The object a "module:attribute" path names, its module imported now."""
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def caption_names(job) -> typing.List[str]:
    """The job's captioners by name, the primary first; [""] for a `caption:` job (the base columns only)."""
    return [config.name for config in job.captioners] or [""]


def _captions_context(config, job) -> dict:
    return dict(captioners=caption_names(job))  # the stage's keyword argument


def _captioner_context(config, job) -> dict:
    return {"primary": config is job.captioners[0]}


CAPTION_STAGE, CAPTIONERS_STAGE = "caption", "captioners"  # one caption per image; several, by name
CAPTION_BACKENDS = {
    HF_BACKEND: Backend("pixcap.stages.caption:CaptionStage"),
    VLLM_BACKEND: Backend("pixcap.stages.caption_vllm:VllmCaptionStage"),
    SIDECAR_BACKEND: Backend("pixcap.stages.caption:SidecarCaptionStage", runs_model=False, reads_captions=True),
}
CAPTION_MODEL_KEY = ModelKey("model", WEIGHTS, example="llava-hf/llava-1.5-7b-hf")


def _control_members(config) -> dict:
    return {R.control_ext(kind): R.control_column(kind) for kind in config.kinds}

STAGES: typing.Tuple[StageSpec, ...] = (
    StageSpec("read", TASK, stage="pixcap.stages.read:ReadStage"),
    StageSpec("decode", TASK, DecodeConfig, stage="pixcap.stages.decode:DecodeStage",
              columns=(R.SHA256, R.FORMAT, R.WIDTH, R.HEIGHT, R.ORIG_WIDTH, R.ORIG_HEIGHT, R.PASSTHROUGH)),
    # On the stored image, in the part's task, before its bytes become a blob: KEY.canny.png beside KEY.jpg.
    StageSpec("control", TASK, ControlConfig, stage="pixcap.stages.control:ControlStage", optional=True,
              switch="kinds", members=_control_members),
    StageSpec("model_inputs", TASK, stage="pixcap.stages.model_inputs:ModelInputsStage", counted=False),
    # Before the captioners: they see decode's model image, which clip then lets go.
    StageSpec("classifiers", ACTORS, ClassifierConfig, stage="pixcap.stages.classify:ClassifierStage",
              model_keys=(ModelKey("model", WEIGHTS, example="Falconsai/nsfw_image_detection"),),
              gpu_key="gpus_per_actor", optional=True, listed="column",
              fields=lambda config, job: [R.score_field(config.column)], check="pixcap.stages.classify:check_classifier"),
    StageSpec(CAPTION_STAGE, ACTORS, CaptionConfig, backends=CAPTION_BACKENDS, model_keys=(CAPTION_MODEL_KEY,),
              gpu_key="gpus_per_actor", columns=(R.CAPTION, R.CAPTION_MODEL), replaced_by=CAPTIONERS_STAGE),
    StageSpec(CAPTIONERS_STAGE, ACTORS, CaptionerConfig, backends=CAPTION_BACKENDS, model_keys=(CAPTION_MODEL_KEY,),
              gpu_key="gpus_per_actor", columns=(R.CAPTION, R.CAPTION_MODEL), listed="name",
              fields=lambda config, job: R.captioner_fields(config.name), context=_captioner_context),
    StageSpec("nouns", ACTORS, NounsConfig, stage="pixcap.stages.nouns:NounsStage",
              model_keys=(ModelKey("model", SPACY),), columns=(R.NOUNS, R.N_NOUNS), context=_captions_context),
    StageSpec("clip", ACTORS, ClipConfig, stage="pixcap.stages.clip:ClipStage",
              model_keys=(ModelKey("model", OPEN_CLIP_CONFIG), ModelKey("pretrained", OPEN_CLIP_CHECKPOINT)),
              gpu_key="gpus_per_actor", columns=(R.CLIP_SCORE, R.GROUNDED_NOUNS, R.N_GROUNDED, R.CLIP_MODEL),
              context=_captions_context),
    StageSpec("t5_tokens", ACTORS, T5TokensConfig, stage="pixcap.stages.t5_tokens:T5TokensStage",
              model_keys=(ModelKey("tokenizer", WEIGHTS, example="DeepFloyd/t5-v1_1-xxl"),), optional=True,
              fields=lambda config, job: R.t5_fields(caption_names(job)), context=_captions_context),
    StageSpec("aesthetic", ACTORS, AestheticConfig, stage="pixcap.stages.aesthetic:AestheticStage",
              model_keys=(ModelKey("model", WEIGHTS_FILE, "LAION's sac+logos+ava1-l14-linearMSE.pth, a .safetensors "
                                   "state dict, or tiny:aesthetic"),),
              columns=(R.AESTHETIC_SCORE,), optional=True),
    StageSpec("clip_nsfw", ACTORS, ClipNsfwConfig, stage="pixcap.stages.clip_nsfw:ClipNsfwStage",
              model_keys=(ModelKey("model", WEIGHTS_FILE, "LAION's clip_ViT-L-14_openai_binary_nsfw_head.pth, a "
                                   ".safetensors state dict, or tiny:clip_nsfw"),),
              optional=True, fields=lambda config, job: [R.score_field(R.NSFW_CLIP_SCORE)]),
)
BY_NAME = {spec.name: spec for spec in STAGES}


def configured() -> typing.List[StageSpec]:
    """The stages with job keys of their own, in order."""
    return [spec for spec in STAGES if spec.config is not None]


def model_stages(job) -> typing.List[StageInstance]:
    """The actor-pool stage instances this job runs, in order (an optional stage only when it is on)."""
    return [instance for spec in STAGES if spec.kind == ACTORS for instance in spec.instances(job)]


def stored_image_stages(job) -> typing.List[StageInstance]:
    """The optional task stages this job runs on each stored image, in order (in the part's task, after decode)."""
    return [instance for spec in STAGES if spec.kind == TASK and spec.optional for instance in spec.instances(job)]


def blob_members(job) -> typing.Dict[str, str]:
    """{member suffix: batch column} of the shard members this job's stages make beside the image."""
    return {member: column for spec in STAGES if spec.members for found in spec.instances(job)
            for member, column in spec.members(found.config).items()}


def instance(job, name: str) -> StageInstance:
    """The job's stage instance of this name."""
    return next(found for found in model_stages(job) if found.name == name)


def with_configs(job, configs: typing.Mapping[str, typing.Any]):
    """A copy of the job whose stage instances named in configs have those configs instead."""
    changes = {}
    for spec in configured():
        names = [found.name for found in spec.instances(job)]
        if not any(name in configs for name in names):
            continue
        if spec.listed:
            changes[spec.name] = [configs.get(name, config) for name, config in zip(names, getattr(job, spec.name))]
        else:
            changes[spec.name] = configs[spec.name]
    return dataclasses.replace(job, **changes)


def record_schema(job):
    """The record of this job's output: SAMPLE_SCHEMA and the columns its stages add (each named
    captioner's, each classifier's, T5 counts). One schema per output: the fingerprint fixes the job."""
    return R.record_schema([field for found in model_stages(job) if found.spec.fields
                            for field in found.spec.fields(found.config, job)])


def quoted(prompt: str) -> typing.List[str]:
    """The names a prompt quotes ({sidecar}, {long}); ValueError for a malformed one."""
    return [name for _, name, _, _ in string.Formatter().parse(prompt) if name is not None]


def reads_captions(job) -> bool:
    """Whether a stage of the job takes the inputs' existing captions (the read stage keeps them)."""
    return (any(found.backend().reads_captions for found in model_stages(job) if found.spec.backends)
            or any(QUOTE_SIDECAR in quoted(config.prompt) for config in job.captioners))


def progress_stages(job) -> typing.Tuple[str, ...]:
    """The stages whose counts the progress line shows, in graph order."""
    return tuple(found for spec in STAGES if spec.counted
                 for found in ([spec.name] if spec.kind == TASK and spec.enabled(job) else [i.name for i in spec.instances(job)]))


def optional_columns() -> typing.Set[str]:
    """Record columns an output may lack: those of optional stages."""
    return {column for spec in STAGES if spec.optional for column in spec.columns}


def choices() -> typing.Dict[str, tuple]:
    """{dotted key: allowed values} of every (unlisted) stage's keys, backends included."""
    found = {}
    for spec in configured():
        if not spec.listed:
            found.update({f"{spec.name}.{key}": values for key, values in _choices(spec).items()})
    return found


def _choices(spec: StageSpec) -> dict:
    return {**({"backend": tuple(spec.backends)} if spec.backends else {}), **spec.config.choices}


def positive_keys() -> typing.Set[str]:
    return {f"{spec.name}.{key}" for spec in configured() if not spec.listed for key in spec.config.positive}


def speed_keys() -> typing.Set[str]:
    """Dotted keys of unlisted stages that change how fast a stage runs, never what it writes (a listed
    stage's are its config's speed_keys under each instance's name)."""
    return {f"{spec.name}.{key}" for spec in configured() if not spec.listed for key in spec.config.speed_keys}


def listed_problems(job) -> typing.List[str]:
    """What is wrong with the job's listed stages (captioners, classifiers), and with any stage config that
    says its own problems (control), one line each."""
    problems = []
    for spec in configured():
        if not spec.listed:
            continue
        seen = set()
        for i, config in enumerate(getattr(job, spec.name)):
            at = f"{spec.name}[{i}]"
            for key, allowed in _choices(spec).items():
                if getattr(config, key) not in allowed:
                    problems.append(f"{at}.{key}: must be one of {', '.join(allowed)}, got {getattr(config, key)!r}")
            problems += [f"{at}.{key}: must be positive, got {getattr(config, key)!r}"
                         for key in spec.config.positive if getattr(config, key) <= 0]
            name = getattr(config, spec.listed)
            pattern = CAPTIONER_NAME if spec.name == CAPTIONERS_STAGE else COLUMN_NAME
            if not pattern.match(name):
                problems.append(f"{at}.{spec.listed}: {name!r} is not a name here (lowercase letters and digits"
                                f"{', and _' if pattern is COLUMN_NAME else ''}, starting with a letter)")
            elif name in seen:
                problems.append(f"{at}.{spec.listed}: {name!r} is named twice")
            seen.add(name)
    problems += _captioner_problems(job)
    problems += [f"{found.name}.{line}" for spec in configured() if hasattr(spec.config, "problems")
                 for found in spec.instances(job) for line in found.config.problems()]
    if not problems:
        names = record_schema(job).names
        twice = sorted({name for name in names if names.count(name) > 1})
        problems += [f"column {name} would be written twice (a classifier's column is another stage's)" for name in twice]
    return problems


def _captioner_problems(job) -> typing.List[str]:
    problems = []
    if job.captioners and job.caption != CaptionConfig():
        problems.append("caption and captioners: give one of them (caption: is one unnamed captioner)")
    earlier = {QUOTE_SIDECAR}
    for i, config in enumerate(job.captioners):
        at = f"captioners[{i}]"
        if config.name == QUOTE_SIDECAR and config.backend != SIDECAR_BACKEND:
            problems.append(f"{at}.name: sidecar is the inputs' own caption; name this captioner otherwise")
        if config.temperature < 0 or config.top_p > 1:
            problems.append(f"{at}: temperature must be >= 0 and top_p in (0, 1], got {config.temperature}, {config.top_p}")
        try:
            names = quoted(config.prompt)
        except ValueError as e:
            problems.append(f"{at}.prompt: {e} (write a literal brace as {{{{ or }}}})")
            names = []
        for name in names:
            if name not in earlier:
                problems.append(f"{at}.prompt: quotes {{{name}}}, which is neither {{sidecar}} nor an earlier "
                                f"captioner's name ({', '.join(sorted(earlier))})")
        earlier.add(config.name)
    return problems


def check(instance: StageInstance) -> str:
    """The stage's check of its resolved config: an error line, or ""."""
    return imported(instance.spec.check)(instance.config) if instance.spec.check else ""
