"""What a new user meets first: the version, `python -m pixcap`, --help with its defaults, one-line
usage errors, key suggestions, the installed example jobs, job files that are not files, no tiny
model by default, a light start-up, and pixcap's messages through `logging`."""
import ast
import dataclasses
import importlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import threading
import tomllib
import zipfile
from pathlib import Path

import pytest

import pixcap
from pixcap.cli.console import configure_console
from pixcap.cli.main import build_parser, main
from pixcap.schemas import JobError, load_job, read_job_yaml
from pixcap.schemas.eval_job import EvalJob
from pixcap.schemas.job import Job, flatten
from pixcap.schemas.models import TINY_PREFIX
from pixcap.schemas.train_job import TrainJob, load_train_job

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def python(*args, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


# --- version, python -m, the API -------------------------------------------------------------

def test_version_is_pyprojects_from_the_command_the_module_and_the_package(capsys, tmp_path):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out == f"pixcap {VERSION}\n"
    assert pixcap.__version__ == VERSION
    ran = python("-m", "pixcap", "--version", cwd=tmp_path)  # elsewhere than the repository
    assert ran.returncode == 0 and ran.stdout == f"pixcap {VERSION}\n", ran.stderr


def test_python_m_pixcap_is_the_command(tmp_path):
    ran = python("-m", "pixcap", "run", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert ran.returncode == 2 and ran.stderr == f"pixcap: error: job file not found: {tmp_path}/missing.yaml\n"


def top_level_names(module: str) -> set:
    """The names a module defines or imports at its top level, read from its source (not imported:
    the API's modules import torch and Ray)."""
    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def test_every_name_of_the_python_api_is_defined_where_it_says():
    for name, module in pixcap._API.items():
        assert name in top_level_names(module), f"pixcap.{name}: not in {module}"
    assert pixcap.load_job is importlib.import_module("pixcap.schemas.job").load_job  # imported on first use
    assert set(pixcap.__all__) <= set(dir(pixcap))
    with pytest.raises(AttributeError):
        pixcap.no_such_function


def test_the_wheel_ships_the_jobs_and_py_typed(tmp_path):
    """`pip install .` users get the example jobs and the typing marker: the wheel, built from a copy."""
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "README.md", source)
    for folder in PYPROJECT["tool"]["setuptools"]["package-dir"].values():
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    jobs = {f"pixcap/jobs/{p.name}" for p in (REPO / "jobs").glob("*.yaml")}
    assert jobs and jobs <= names
    assert {"pixcap/py.typed", "pixcap/__init__.py", "pixcap/__main__.py", "pixcap/jobs/__init__.py"} <= names


# --- help, usage errors, suggestions ---------------------------------------------------------

def help_of(capsys, *argv) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare words


def test_help_shows_the_defaults(capsys):
    encode = help_of(capsys, "encode")
    assert "(default: DeepFloyd/t5-v1_1-xxl)" in encode and "(default: stabilityai/sd-vae-ft-ema)" in encode
    assert "--resolution {256,512,1024} square side, or bucket table (default: 256)" in encode
    assert "--batch-size BATCH_SIZE (default: 16)" in encode
    assert "(default: report.html)" in help_of(capsys, "report")
    assert "--seed SEED (default: 0)" in help_of(capsys, "sample")
    assert "(default: None)" not in help_of(capsys, "run") and "(default: False)" not in help_of(capsys, "run")


def test_sample_says_output_and_still_takes_out(capsys):
    parser = build_parser()
    assert parser.parse_args(["sample", "RUN", "--prompt", "a", "--output", "here"]).out == "here"
    sample = help_of(capsys, "sample")
    assert "--output OUT" in sample and "--out " not in sample
    configure_console()
    assert parser.parse_args(["sample", "RUN", "--prompt", "a", "--out", "there"]).out == "there"
    assert capsys.readouterr().err == "pixcap sample: --out is deprecated; use --output\n"


@pytest.mark.parametrize("argv, line", [
    (["run"], "pixcap run: error: the following arguments are required: job"),
    ([], "pixcap: error: the following arguments are required: command"),
    (["stats", "OUT", "--jsn"], "pixcap: error: unrecognized arguments: --jsn"),
])
def test_a_usage_error_is_one_line_with_one_prefix(capsys, argv, line):
    code, out, err = run_cli(capsys, *argv)
    assert (code, out, err) == (2, "", line + "\n")


@pytest.mark.parametrize("command, text, message", [
    ("run", "inputs: [x]\noutput: o\nshard_sise: 4\n", "unknown key shard_sise; did you mean shard_size?"),
    ("run", "inputs: [x]\noutput: o\ncaption:\n  max_new_token: 4\n",
     "unknown key caption.max_new_token; did you mean caption.max_new_tokens?"),
    ("train", "shards: [a.tar]\noutput: o\nmax_step: 5\n", "unknown key max_step; did you mean max_steps?"),
    ("run", "inputs: [x]\noutput: o\nbanana: 1\n", "unknown key banana"),
])
def test_a_mistyped_key_gets_a_suggestion(tmp_path, capsys, command, text, message):
    job = tmp_path / "job.yaml"
    job.write_text(text)
    assert run_cli(capsys, command, job) == (2, "", f"pixcap: error: {message}\n")


def test_a_mistyped_set_key_gets_a_suggestion(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text("inputs: [x]\noutput: o\ncaption:\n  model: tiny:llava\n")
    code, _, err = run_cli(capsys, "run", job, "--set", "clip.grounding_treshold=0.1")
    assert code == 2 and err.endswith("unknown key clip.grounding_treshold; did you mean clip.grounding_threshold?\n")


# --- job files: shipped ones, and what is not a file ------------------------------------------

def test_the_shipped_jobs_are_found_by_name_from_anywhere(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "jobs")
    listed = {line.split()[0] for line in out.splitlines()[:-2]}
    assert code == 0 and listed == {p.stem for p in (REPO / "jobs").glob("*.yaml")} and "local" in listed
    code, out, _ = run_cli(capsys, "jobs", "local")
    assert code == 0 and out == (REPO / "jobs" / "local.yaml").read_text()
    assert read_job_yaml("local") == read_job_yaml(str(REPO / "jobs" / "local.yaml"))
    assert load_train_job(read_job_yaml("train_tiny")).model == "tiny"
    (tmp_path / "local").write_text("shard_size: 3\n")  # a file of that name is the user's, and wins
    assert read_job_yaml("local") == {"shard_size": 3}


def test_a_mistyped_shipped_job_is_suggested(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "run", "lcoal") == (2, "", "pixcap: error: job file not found: lcoal; did you mean the shipped job local?\n")
    assert run_cli(capsys, "jobs", "lcoal") == (2, "", "pixcap: error: no shipped job lcoal; did you mean local?\n")


def refused_within(seconds, *argv):
    """main(argv) in a thread: (code, finished in time). A job file that blocks must not hang the command."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", main([str(a) for a in argv])), daemon=True)
    thread.start()
    thread.join(seconds)
    return result.get("code"), not thread.is_alive()


@pytest.mark.parametrize("command", ["run", "train"])
def test_a_job_file_that_is_a_device_a_pipe_or_a_folder_is_named_for_what_it_is(tmp_path, capsys, command):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # no writer: opening it for reading the usual way blocks forever
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    for path, kind in [("/dev/zero", "a character device"), (link, "a character device"),
                       (fifo, "a pipe (a FIFO, or a process substitution <(...))"), (tmp_path, "a folder")]:
        code, finished = refused_within(10, command, path)
        assert finished and code == 2, path
        assert capsys.readouterr().err == f"pixcap: error: {path}: is {kind}, not a job file; write the job to a file and name that\n"


def test_a_process_substitution_is_named_and_never_read(tmp_path):
    """`pixcap run <(cat job.yaml)`, as bash runs it: /dev/fd/N, a pipe. Refused at once, its writer left alone."""
    (tmp_path / "job.yaml").write_text("inputs: [x]\n")
    ran = subprocess.run(["bash", "-c", f"{sys.executable} -m pixcap run <(exec 2>/dev/null; sleep 20; cat job.yaml)"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=25)
    assert ran.returncode == 2
    assert ran.stderr.startswith("pixcap: error: /dev/fd/") and "is a pipe (a FIFO, or a process substitution" in ran.stderr


def test_a_job_file_too_large_to_be_one_is_refused_unread(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    with open(job, "wb") as f:
        f.truncate(5 * 2**30)  # sparse: 5 GiB that reading would hold in memory
    code, _, err = run_cli(capsys, "run", job)
    assert code == 2 and err == f"pixcap: error: {job}: {5 * 2**30} bytes is not a job file (at most 1048576 bytes)\n"


# --- no tiny model by default --------------------------------------------------------------

def defaults(cls) -> dict:
    return flatten(dataclasses.asdict(cls()))


@pytest.mark.parametrize("cls", [Job, TrainJob, EvalJob])
def test_no_default_is_a_tiny_model(cls):
    tiny = {key: value for key, value in defaults(cls).items() if isinstance(value, str) and value.startswith(TINY_PREFIX)}
    assert tiny == {}
    assert defaults(TrainJob)["model"] != "tiny"  # the tiny transformer too


def test_a_job_without_a_captioner_is_refused_naming_the_key(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(f"inputs: [{tmp_path}]\noutput: {tmp_path}/out\n")
    code, out, err = run_cli(capsys, "run", job)
    assert code == 2 and out == "" and err.startswith("pixcap: error: caption.model: no model named")
    assert not (tmp_path / "out").exists()
    with pytest.raises(JobError, match="^caption.model: "):
        load_job({"caption": {"backend": "vllm"}})
    assert load_job({"caption": {"backend": "sidecar"}}).caption.model == ""  # keeps existing captions: no model


# --- start-up -------------------------------------------------------------------------------

HEAVY = ("torch", "ray", "transformers", "diffusers", "webdataset", "open_clip", "spacy", "matplotlib")


@pytest.mark.parametrize("argv", [
    ["--help"], ["run", "--help"], ["run", "missing.yaml"], ["run", "/dev/zero"], ["train", "missing.yaml"],
    ["run", "{tmp}/job.yaml"], ["verify", "{tmp}"], ["stats", "{tmp}"], ["jobs"], ["--version"],
], ids=lambda argv: " ".join(argv))
def test_help_refusals_verify_and_stats_import_no_heavy_library(tmp_path, argv):
    """What starts in well under a second: none of these imports torch, Ray or a model library
    (`pixcap run` of a missing file took 2.9 s and 900 MB, `verify` 6.5 s)."""
    (tmp_path / "job.yaml").write_text("inputs: [x]\noutput: o\nshard_sise: 1\n")
    argv = [a.format(tmp=tmp_path) for a in argv]
    code = (f"import sys\nfrom pixcap.cli.main import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    ran = python("-c", code, cwd=tmp_path)
    assert ran.stdout.splitlines()[-1] == "HEAVY []", ran.stdout + ran.stderr


@pytest.mark.parametrize("command", ["verify", "stats"])
def test_verify_and_stats_of_a_real_output_import_no_heavy_library(pipeline_run, tmp_path, command):
    """`verify` spent 6.5 s of its 6 s idle run importing webdataset, which imports torch."""
    code = (f"import sys\nfrom pixcap.cli.main import main\ncode = main([{command!r}, {str(pipeline_run.out)!r}])\n"
            f"print('HEAVY', code, sorted(m for m in {HEAVY!r} if m in sys.modules))")
    ran = python("-c", code, cwd=tmp_path)
    assert ran.stdout.splitlines()[-1] == "HEAVY 0 []", ran.stdout + ran.stderr


# --- logging --------------------------------------------------------------------------------

def test_messages_go_through_the_pixcap_logger(capsys):
    configure_console()
    logger = logging.getLogger("pixcap.some.module")
    logger.info("pixcap: a line")
    logger.warning("pixcap: a warning")
    assert capsys.readouterr() == ("", "pixcap: a line\npixcap: a warning\n")  # one line each, as before; stdout is for results
    root = logging.getLogger("pixcap")
    level = root.level
    try:  # a notebook silences pixcap, or collects its records, with logging alone
        root.setLevel(logging.WARNING)
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        root.addHandler(handler)
        logger.info("hidden")
        logger.error("shown")
        assert capsys.readouterr() == ("", "shown\n") and [r.getMessage() for r in records] == ["shown"]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_quiet_keeps_warnings_and_the_level_after(capsys):
    logger = logging.getLogger("pixcap")
    before = logger.level
    parser = build_parser()
    for argv in (["--quiet", "sample", "RUN", "--prompt", "a"], ["sample", "RUN", "--prompt", "a", "-q"]):
        assert parser.parse_args(argv).quiet is True
    assert parser.parse_args(["sample", "RUN", "--prompt", "a"]).quiet is False
    code, out, err = run_cli(capsys, "--quiet", "stats", "/nonexistent")
    assert code == 2 and err.startswith("pixcap: error: ")
    assert logger.level == before


def test_a_stream_the_library_writes_to_becomes_log_records():
    """run_job and select_subset write their lines to a stream; given none, to this one: the logger's."""
    from pixcap.log_stream import LogStream

    records = []
    logger = logging.getLogger("pixcap.test.stream")
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        stream = LogStream(logger)
        print("pixcap: one line", file=stream, flush=True)
        stream.write("pixcap: a line in ")
        stream.write("two writes\nand a rest")
        assert [r.getMessage() for r in records] == ["pixcap: one line", "pixcap: a line in two writes"]
        assert not stream.isatty()  # no progress bar drawn into a log
    finally:
        logger.removeHandler(handler)
