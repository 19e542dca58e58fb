"""The job file: every key a pipeline job accepts, its type and its default.

`load_job` validates a plain dict (from YAML, after --set overrides): unknown keys and wrong
types are refused with a JobError that names the dotted key.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import stat
import reprlib
import typing
from dataclasses import dataclass, field

import yaml

from . import stages as stage_registry
from .models import DEFAULT_MODELS_CACHE
from .stages import DEFAULT_PROMPT  # noqa: F401 (part of the job's API)


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
class RayConfig:
    address: typing.Optional[str] = None  # None: start Ray locally; "auto" or ray://host:port
    cpus_per_task: float = 1.0  # read, decode and write tasks
    cpus_per_actor: float = 1.0  # each caption, nouns and clip actor (on top of its GPUs)


@dataclass
class JobBase:
    inputs: typing.List[str] = field(default_factory=list)  # tars, folders, globs, fsspec URLs
    output: str = ""
    shard_size: int = 1000  # inputs per shard; a shard holds fewer samples where some are rejected
    models_cache: str = DEFAULT_MODELS_CACHE  # where tiny:* models are built
    progress_seconds: float = 10.0
    storage_options: dict = field(default_factory=dict)  # passed to fsspec with every input and output URL (e.g. S3 client_kwargs)
    stall_seconds: float = 600.0  # no stage moving for this long: say which waits, and on what
    license: str = "other"  # the dataset card's license (an SPDX id such as cc-by-4.0, or other): the images' own
    # How an input is known to be unchanged since the output was made from it: stat (size and mtime,
    # or the store's ETag; a file rewritten with both kept passes) or sha256 (every byte hashed on every run).
    input_identity: str = "stat"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The job: the keys above, and one mapping per stage of the registry (decode, caption, nouns, clip,
# aesthetic, ...) with its config class's keys. A stage added to the registry is a job key at once.
Job = dataclasses.make_dataclass(
    "Job", [*[(spec.name, typing.List[spec.config], field(default_factory=list)) if spec.listed else
              (spec.name, spec.config, field(default_factory=spec.config)) for spec in stage_registry.configured()],
            ("ray", RayConfig, field(default_factory=RayConfig))],
    bases=(JobBase,))
Job.__module__ = __name__
Job.__doc__ = "A pipeline job: its inputs, output and settings, and each stage's keys."

POSITIVE = {"shard_size"} | stage_registry.positive_keys()
INPUT_IDENTITIES = ("stat", "sha256")  # input_identity's values (pipeline/inputs.py)


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
        if dataclasses.is_dataclass(inner):  # a listed stage's configs (captioners, classifiers)
            return [build_dataclass(inner, v, f"{key}[{i}].") for i, v in enumerate(value)]
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
        raise JobError(f"unknown key {cut(prefix + str(unknown[0]))}{suggestion(str(unknown[0]), names, prefix)}")
    kwargs = {}
    for name, value in data.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = build_dataclass(annotation, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, annotation, f"{prefix}{name}")
    return cls(**kwargs)


def suggestion(key: str, names, prefix: str = "") -> str:
    """'; did you mean shard_size?' for a mistyped key close to a known one, else ''."""
    close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.75)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


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
    check_values(job, {**stage_registry.choices(), "input_identity": INPUT_IDENTITIES}, POSITIVE)
    if job.decode.max_aspect_ratio < 1.0:
        raise JobError(f"decode.max_aspect_ratio: must be at least 1, got {job.decode.max_aspect_ratio}")
    if not 1 <= job.decode.jpeg_quality <= 100:
        raise JobError(f"decode.jpeg_quality: must be 1..100, got {job.decode.jpeg_quality}")
    problems = stage_registry.listed_problems(job)
    if problems:
        raise JobError(problems[0])
    _check_models_named(job)
    return job


def _check_models_named(job) -> None:
    """Every model a running stage needs is named: no default is a test model, and a forgotten key
    must not quietly make a dataset of babble."""
    for instance in stage_registry.model_stages(job):
        spec, config = instance.spec, instance.config
        if not instance.runs_model():
            continue
        for model_key in spec.model_keys:
            if not getattr(config, model_key.key):
                example = f" (e.g. {model_key.example})" if model_key.example else ""
                without = [name for name, backend in spec.backends.items() if not backend.runs_model]
                other = f", or {spec.name}.backend: {' or '.join(without)} to keep existing ones" if without else ""
                raise JobError(f"{instance.name}.{model_key.key}: no model named; set it to a model folder or hub "
                               f"name{example}{other}")


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


MAX_JOB_BYTES = 2**20  # a job is a page of YAML; a bigger file is not one, and is never read whole
# A --set value is a word, a list of inputs or a prompt; PyYAML parses about 30 KB/s of flow lists in
# Python, so a pasted megabyte would take a minute before its refusal.
MAX_SET_BYTES = 2**16


def _kind(mode: int) -> str:
    """What a file that is not a regular file is, in a user's words."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a pipe (a FIFO, or a process substitution <(...))"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _not_found(path: str) -> JobError:
    from pixcap.jobs import shipped_jobs  # only now: the shipped jobs are named when a file is not found

    hint = ""
    if os.sep not in path and "/" not in path:  # a bare name may be a shipped job's, mistyped
        names = sorted(shipped_jobs())
        close = difflib.get_close_matches(path.removesuffix(".yaml"), names, n=1, cutoff=0.75)
        hint = f"; did you mean the shipped job {close[0]}?" if close else "; `pixcap jobs` lists the shipped jobs"
    return JobError(f"job file not found: {cut(path, 200)}{hint}")


def read_job_text(path: str) -> str:
    """The text of a job file: a path, or the bare name of a shipped job (`local`) where no such file exists.

    Only a regular file of at most MAX_JOB_BYTES is read. A folder, a pipe or a device (/dev/zero) is
    refused as what it is, before it is opened, and checked again once open: reading one could block
    forever or never end. Opened non-blocking, so that even a pipe swapped in meanwhile cannot hang us.
    """
    named = cut(path, 200)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        from pixcap.jobs import job_path

        shipped = job_path(path)
        if shipped is None:
            raise _not_found(path) from None
        path, mode = shipped, os.stat(shipped).st_mode
    except (OSError, ValueError) as e:  # a permission, a name too long, a NUL in the name
        raise JobError(f"{named}: cannot read the job file: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(mode):
        raise JobError(f"{named}: is {_kind(mode)}, not a job file; write the job to a file and name that")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise JobError(f"{named}: cannot read the job file: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise JobError(f"{named}: is {_kind(info.st_mode)}, not a job file; write the job to a file and name that")
        if info.st_size > MAX_JOB_BYTES:
            raise JobError(f"{named}: {info.st_size} bytes is not a job file (at most {MAX_JOB_BYTES} bytes)")
        chunks, size = [], 0
        while size <= MAX_JOB_BYTES:  # the file may grow while read: never more than the bound
            chunk = os.read(fd, MAX_JOB_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise JobError(f"{named}: cannot read the job file: {e.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_JOB_BYTES:
        raise JobError(f"{named}: more than {MAX_JOB_BYTES} bytes is not a job file")
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as e:
        raise JobError(f"{named}: not UTF-8 text: {e.reason} at byte {e.start}") from None


def read_job_yaml(path: str, overrides: typing.Sequence[str] = ()) -> dict:
    """Read a YAML job (plain data only: load_yaml) and apply `dotted.key=value` overrides.

    A value is parsed as YAML, so `--set caption.batch_size=4` gives an int and
    `--set inputs=[a,b]` a list. Errors are JobErrors naming the file or the key.
    """
    text = read_job_text(path)
    try:
        data = load_yaml(text) or {}
    except YAMLRefused as e:
        raise JobError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise JobError(f"{path}: not valid YAML: {cut(str(e).splitlines()[0], 200)}") from None
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
    if len(raw) > MAX_SET_BYTES:
        raise JobError(f"--set {named}: a value of {len(raw)} characters is not a setting (at most {MAX_SET_BYTES});"
                       " put it in the job file")
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
