"""Job files and --set values that parse but must not run: YAML aliases (billion laughs), keys
written twice, NaN and infinities where a number bounds a check, and huge values quoted in errors.

Every refusal is exit code 2 with one short line, for `pixcap run` and `pixcap train` alike
(both read jobs through schemas/job.py), and nothing is written.
"""
import dataclasses
import resource
import time
import typing

import pytest

from pixcap.cli.main import main
from pixcap.schemas import JobError, load_job, read_job_yaml
from pixcap.schemas.job import Job, load_yaml
from pixcap.schemas.train_job import TrainJob, load_train_job

# The 454-byte file of the trial: nine levels of nine aliases under shard_size, 9**9 "lol"s once built.
LEVELS = "abcdefghi"
BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n" for previous, name in zip(LEVELS, LEVELS[1:])
) + "shard_size: *i\n"

COMMANDS = {
    "run": "inputs: [{tmp}/images]\noutput: {tmp}/out\n",
    "train": "shards: [{tmp}/shards/a.tar]\noutput: {tmp}/out\n",
}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(tmp_path, code, out, err, *fragments):
    assert code == 2 and out == "", err
    assert err.startswith("pixcap: error: ") and len(err.strip().splitlines()) == 1, err
    assert len(err) < 400, f"{len(err)} characters"
    for fragment in fragments:
        assert fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]  # nothing written


@pytest.mark.parametrize("command", COMMANDS)
def test_billion_laughs_job_file_is_refused_at_once(tmp_path, capsys, command):
    job = tmp_path / "job.yaml"
    job.write_text(COMMANDS[command].format(tmp=tmp_path) + BILLION_LAUGHS)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    code, out, err = run_cli(capsys, command, job)
    seconds = time.monotonic() - start
    assert_refused(tmp_path, code, out, err, f"{job}: line 4: YAML aliases (*a) are not accepted")
    assert seconds < 10, f"{seconds:.1f} s"  # was 67 s and 2.9 GB; the first command in a session imports torch
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB"


@pytest.mark.parametrize("command, key", [("run", "caption.prompt"), ("train", "text_encoder")])
def test_aliases_in_a_set_value_are_refused(tmp_path, capsys, command, key):
    job = tmp_path / "job.yaml"
    job.write_text(COMMANDS[command].format(tmp=tmp_path))
    levels = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
        f"&{name} [{', '.join([f'*{previous}'] * 9)}]" for previous, name in zip(LEVELS, LEVELS[1:])]
    code, out, err = run_cli(capsys, command, job, "--set", f"{key}=[{', '.join(levels)}]")
    assert_refused(tmp_path, code, out, err, f"--set {key}: line 1: YAML aliases (*a) are not accepted")


def test_an_undefined_alias_in_a_set_value_is_still_text():
    """`*bold* photo` is no alias of anything: as before, text YAML cannot parse is the text."""
    data = read_job_yaml(__file__.replace("test_job_file.py", "../jobs/local.yaml"), ["caption.prompt=*bold* photo"])
    assert data["caption"]["prompt"] == "*bold* photo"


@pytest.mark.parametrize("text, message", [
    ("shard_size: 4\nprogress_seconds: 1\nshard_size: 8\n", "key shard_size written twice, lines 1 and 3"),
    ("decode:\n  max_side: 512\n  min_side: 16\n  max_side: 2048\n", "key decode.max_side written twice, lines 2 and 4"),
    ("decode: {min_side: 16, min_side: 32}\n", "key decode.min_side written twice, lines 1 and 1"),
    ("inputs:\n  - {a: 1, a: 2}\n", "key inputs[0].a written twice, lines 2 and 2"),
])
def test_a_key_written_twice_is_refused_naming_it_and_both_lines(tmp_path, text, message):
    job = tmp_path / "job.yaml"
    job.write_text(text)
    with pytest.raises(JobError) as refused:
        read_job_yaml(str(job))
    assert str(refused.value) == f"{job}: {message}"


def test_a_key_written_twice_exits_2_from_the_cli(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(COMMANDS["run"].format(tmp=tmp_path) + "decode:\n  max_aspect_ratio: 4\n  max_aspect_ratio: 100\n")
    code, out, err = run_cli(capsys, "run", job)
    assert_refused(tmp_path, code, out, err, "key decode.max_aspect_ratio written twice, lines 4 and 5")


def test_plain_yaml_still_loads_as_safe_load_would():
    import yaml

    text = "a: 1\nb: [x, 2.5, true, null]\nc: {d: '3'}\nwhen: 2024-01-01\n<<: {e: 5}\n"
    assert load_yaml(text) == yaml.safe_load(text)


def float_keys(cls, prefix: str = "") -> list:
    """The dotted names of every float (or Optional[float]) key of a job dataclass."""
    keys = []
    for f in dataclasses.fields(cls):
        annotation = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(annotation):
            keys += float_keys(annotation, f"{prefix}{f.name}.")
        elif annotation is float or float in typing.get_args(annotation):
            keys.append(f"{prefix}{f.name}")
    return keys


def nested(dotted: str, value) -> dict:
    *parents, leaf = dotted.split(".")
    data = {leaf: value}
    for part in reversed(parents):
        data = {part: data}
    return data


@pytest.mark.parametrize("text", [".nan", ".NaN", ".inf", "-.inf", "+.inf"])
@pytest.mark.parametrize("load, cls", [(load_job, Job), (load_train_job, TrainJob)], ids=["run", "train"])
def test_nan_and_infinities_are_refused_for_every_float_key(load, cls, text):
    keys = float_keys(cls)
    assert keys, cls
    for key in keys:
        with pytest.raises(JobError, match=f"^{key}: must be a finite number, got "):
            load(nested(key, load_yaml(text)))


def test_nan_aspect_ratio_from_the_command_line_exits_2(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(COMMANDS["run"].format(tmp=tmp_path))
    code, out, err = run_cli(capsys, "run", job, "--set", "decode.max_aspect_ratio=.nan")
    assert_refused(tmp_path, code, out, err, "decode.max_aspect_ratio: must be a finite number, got nan")


@pytest.mark.parametrize("data, start", [
    ({"shard_size": "x" * 10_000_000}, "shard_size: expected int, got str 'xxx"),
    ({"shard_size": list(range(1_000_000))}, "shard_size: expected int, got list [0, 1, 2, 3, ...]"),
    ({"caption": {"backend": "y" * 100_000}}, "caption.backend: must be one of "),
    ({"z" * 100_000: 1}, "unknown key zzz"),
    ({"decode": "w" * 100_000}, "decode: expected a mapping, got str 'www"),
])
def test_values_quoted_in_errors_are_cut_short(data, start):
    with pytest.raises(JobError) as refused:
        load_job(data)
    message = str(refused.value)
    assert message.startswith(start) and len(message) < 150, message


def test_a_long_set_value_is_quoted_short(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(COMMANDS["run"].format(tmp=tmp_path))
    code, out, err = run_cli(capsys, "run", job, "--set", "shard_size=[" + "1," * 10_000 + "1]")
    assert_refused(tmp_path, code, out, err, "shard_size: expected int, got list [1, 1, 1, 1, ...]")


def test_a_huge_set_value_is_refused_unparsed_in_one_line(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(COMMANDS["run"].format(tmp=tmp_path))
    started = time.monotonic()
    code, out, err = run_cli(capsys, "run", job, "--set", "shard_size=[" + "1," * 1_000_000 + "1]")
    assert_refused(tmp_path, code, out, err, "--set shard_size: a value of 2000003 characters is not a setting")
    assert time.monotonic() - started < 5  # parsing it took a minute
