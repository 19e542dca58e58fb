"""The job file: every key a pipeline job accepts, its type and its default.

`load_job` validates a plain dict (from YAML, after --set overrides): unknown keys and wrong
types are refused with a JobError that names the dotted key.
"""
from __future__ import annotations

import dataclasses
import math
import os
import reprlib
import typing
from dataclasses import dataclass, field

import yaml

from .models import DEFAULT_MODELS_CACHE, TINY_CLIP, TINY_LLAVA

DEFAULT_PROMPT = "Describe this image and its style in a very detailed manner"


class JobError(ValueError):
    """A job file or --set value that cannot be run; the message names the key."""


QUOTE_CHARS = 60  # a value quoted in an error: enough to recognise it, never a flood


_SHORT_REPR = reprlib.Repr()  # bounded in depth and width, so even a huge value is quoted at once
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 2, 4, 4
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = QUOTE_CHARS


def quote(value) -> str:
    """A repr of value cut to QUOTE_CHARS, made without a full repr of a huge value: a crafted
    value must not make a 700 MB error line."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…"


def cut(text: str, limit: int = QUOTE_CHARS) -> str:
    """Text (a key, a path) cut to limit characters."""
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class DecodeConfig:
    max_side: int = 1024  # longest side of the stored image; larger ones are re-encoded
    max_pixels: int = 100_000_000  # refused before a full decode (decompression bombs)
    max_file_bytes: int = 256 * 2**20  # a bigger file or tar member is refused unread (memory)
    min_side: int = 32  # shorter images are rejected as too_small
    max_aspect_ratio: float = 8.0  # long side / short side; beyond is rejected as bad_aspect
    model_side: int = 336  # short side of the RGB image handed to the models
    jpeg_quality: int = 95  # for re-encoded stored images


@dataclass
class CaptionConfig:
    backend: str = "hf"  # hf: LLaVA through transformers; vllm: through vLLM's engine; sidecar: existing KEY.txt captions
    model: str = TINY_LLAVA  # a path, a hub name, or tiny:llava (built offline on first use)
    prompt: str = DEFAULT_PROMPT
    max_new_tokens: int = 120
    batch_size: int = 8
    actors: int = 1  # captioning actors; each loads the model once
    gpus_per_actor: float = 0.0  # > 0 asks Ray for GPUs and runs bf16 + SDPA on CUDA
    trust_remote_code: bool = False
    # hf: a static KV cache lets transformers compile the decoding step; auto takes it on CUDA,
    # where it is faster, and the dynamic cache on the CPU. Both give the same greedy captions.
    kv_cache: str = "auto"


@dataclass
class NounsConfig:
    model: str = "en_core_web_sm"
    batch_size: int = 256
    actors: int = 1


@dataclass
class ClipConfig:
    model: str = TINY_CLIP  # an open_clip name (ViT-L-14), a config JSON path, or tiny:clip
    pretrained: str = TINY_CLIP  # an open_clip tag, a checkpoint path, or tiny:clip
    grounding_threshold: float = 0.2  # cosine of image and "a photo of a {noun}"
    batch_size: int = 32
    actors: int = 1
    gpus_per_actor: float = 0.0


@dataclass
class AestheticConfig:
    # "" is off. Else LAION's improved aesthetic predictor as a state dict (a .pth loaded tensors
    # only, or .safetensors), e.g. sac+logos+ava1-l14-linearMSE.pth with clip ViT-L-14/openai;
    # or tiny:aesthetic (for tiny:clip). Scores the CLIP image embedding: stages/aesthetic.py.
    model: str = ""
    batch_size: int = 256
    actors: int = 1


@dataclass
class RayConfig:
    address: typing.Optional[str] = None  # None: start Ray locally; "auto" or ray://host:port
    cpus_per_task: float = 1.0  # read, decode and write tasks
    cpus_per_actor: float = 1.0  # each caption, nouns and clip actor (on top of its GPUs)


@dataclass
class Job:
    inputs: typing.List[str] = field(default_factory=list)  # tars, folders, globs, fsspec URLs
    output: str = ""
    shard_size: int = 1000  # inputs per shard; a shard holds fewer samples where some are rejected
    models_cache: str = DEFAULT_MODELS_CACHE  # where tiny:* models are built
    progress_seconds: float = 10.0
    storage_options: dict = field(default_factory=dict)  # passed to fsspec with every input and output URL (e.g. S3 client_kwargs)
    stall_seconds: float = 600.0  # no stage moving for this long: say which waits, and on what
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    nouns: NounsConfig = field(default_factory=NounsConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    aesthetic: AestheticConfig = field(default_factory=AestheticConfig)  # optional; after clip
    ray: RayConfig = field(default_factory=RayConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CHOICES = {"caption.backend": ("hf", "vllm", "sidecar"), "caption.kv_cache": ("auto", "static", "dynamic")}
POSITIVE = {
    "shard_size", "decode.max_side", "decode.max_pixels", "decode.max_file_bytes", "decode.model_side",
    "caption.max_new_tokens", "caption.batch_size", "caption.actors", "nouns.batch_size", "nouns.actors",
    "clip.batch_size", "clip.actors", "aesthetic.batch_size", "aesthetic.actors",
}


def _coerce(value, annotation, key: str):
    """Check one value against its annotation; ints are accepted where floats are wanted."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _coerce(value, inner, key)
    if origin in (list, typing.List):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise JobError(f"{key}: expected a list, got {type(value).__name__}")
        (inner,) = typing.get_args(annotation)
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if annotation is int and isinstance(value, bool) or not isinstance(value, annotation):
        raise JobError(f"{key}: expected {annotation.__name__}, got {type(value).__name__} {quote(value)}")
    if annotation is float and not math.isfinite(value):
        # NaN compares false with everything, so `ratio > nan` would switch a check off.
        raise JobError(f"{key}: must be a finite number, got {value}")
    return value


def build_dataclass(cls, data, prefix: str = ""):
    """Build a (nested) config dataclass from a dict, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise JobError(f"{prefix.rstrip('.') or 'job'}: expected a mapping, got {type(data).__name__} {quote(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted((set(data) - names), key=str)
    if unknown:
        raise JobError(f"unknown key {cut(prefix + str(unknown[0]))}")
    kwargs = {}
    for name, value in data.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = build_dataclass(annotation, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, annotation, f"{prefix}{name}")
    return cls(**kwargs)


def check_values(config, choices: dict, positive=(), non_negative=()) -> None:
    """Refuse values outside their choices, and numbers that must be positive or non-negative."""
    flat = flatten(config.to_dict())
    for key, allowed in choices.items():
        if flat[key] not in allowed:
            raise JobError(f"{key}: must be one of {', '.join(map(str, allowed))}, got {quote(flat[key])}")
    for key in positive:
        if flat[key] <= 0:
            raise JobError(f"{key}: must be positive, got {quote(flat[key])}")
    for key in non_negative:
        if flat[key] < 0:
            raise JobError(f"{key}: must not be negative, got {quote(flat[key])}")


def local_model_path(key: str, name: str):
    """A model name starting with /, ./, ../ or ~ is a local path and must exist (returned absolute);
    any other name (a hub id, an open_clip tag) is returned unchanged."""
    if not name.startswith(("/", "./", "../", "~")):
        return name
    path = os.path.abspath(os.path.expanduser(name))
    if not os.path.exists(path):
        raise JobError(f"{key}: model path does not exist: {cut(name, 200)}")
    return path


def load_job(data: dict) -> Job:
    """Validate a job dict and fill in defaults."""
    job = build_dataclass(Job, data or {}, "")
    check_values(job, CHOICES, POSITIVE)
    if job.decode.max_aspect_ratio < 1.0:
        raise JobError(f"decode.max_aspect_ratio: must be at least 1, got {job.decode.max_aspect_ratio}")
    if not 1 <= job.decode.jpeg_quality <= 100:
        raise JobError(f"decode.jpeg_quality: must be 1..100, got {job.decode.jpeg_quality}")
    return job


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class YAMLRefused(JobError):
    """YAML that parses but that a job may not use (an alias, a key written twice)."""


class JobLoader(yaml.SafeLoader):
    """yaml.SafeLoader (plain data, no tags that build objects) that also refuses aliases.

    An alias repeats a node by reference: nine levels of them ("billion laughs") turn a
    454-byte file into gigabytes once a value is built or printed. A job file never needs one.
    """

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self.anchors:  # an undefined one stays YAML's own error
                raise YAMLRefused(f"line {event.start_mark.line + 1}: YAML aliases (*{cut(event.anchor)})"
                                  " are not accepted in a job; write the value out")
        return super().compose_node(parent, index)


def _refuse_repeated_keys(node, prefix: str = "") -> None:
    """A key written twice in one mapping is refused (YAML would keep the last one silently)."""
    if isinstance(node, yaml.MappingNode):
        lines = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key, line = prefix + cut(key_node.value), key_node.start_mark.line + 1
                if key in lines:
                    raise YAMLRefused(f"key {key} written twice, lines {lines[key]} and {line}")
                lines[key] = line
                _refuse_repeated_keys(value_node, key + ".")
            else:
                _refuse_repeated_keys(value_node, prefix)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_repeated_keys(item, f"{prefix.rstrip('.')}[{i}].")


def load_yaml(text):
    """yaml.safe_load's result for text (a str or a file), refusing aliases and repeated keys."""
    loader = JobLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_repeated_keys(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_job_yaml(path: str, overrides: typing.Sequence[str] = ()) -> dict:
    """Read a YAML job (plain data only: load_yaml) and apply `dotted.key=value` overrides.

    A value is parsed as YAML, so `--set caption.batch_size=4` gives an int and
    `--set inputs=[a,b]` a list. Errors are JobErrors naming the file or the key.
    """
    if not os.path.isfile(path):
        raise JobError(f"job file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = load_yaml(f) or {}
    except YAMLRefused as e:
        raise JobError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise JobError(f"{path}: not valid YAML: {cut(str(e).splitlines()[0], 200)}") from None
    except UnicodeDecodeError as e:
        raise JobError(f"{path}: not UTF-8 text: {e.reason} at byte {e.start}") from None
    if not isinstance(data, dict):
        raise JobError(f"{path}: a job file is a mapping of keys, got {type(data).__name__}")
    for item in overrides:
        set_dotted(data, item)
    return data


def set_dotted(data: dict, assignment: str) -> None:
    """Apply one `a.b.c=value` to a nested dict."""
    dotted, sep, raw = assignment.partition("=")
    if not sep or not dotted:
        raise JobError(f"--set {quote(assignment)}: expected dotted.key=value")
    named = cut(dotted, 200)
    try:
        value = load_yaml(raw) if raw else ""
    except YAMLRefused as e:
        raise JobError(f"--set {named}: {e}") from None
    except yaml.constructor.ConstructorError as e:  # a !!python/... tag: refused, never kept as text
        raise JobError(f"--set {named}: {cut(str(e.problem), 200)}") from None
    except yaml.YAMLError:  # other text YAML cannot parse (a prompt with a colon) is the text itself
        value = raw
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise JobError(f"--set {named}: {cut(part)} is not a mapping")
    node[leaf] = value
