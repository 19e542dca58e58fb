"""Loading a model, a checkpoint or a job file never runs code that came with it.

1. A model folder's own python (`auto_map`) runs only when the job sets caption.trust_remote_code.
2. Checkpoints and weights are read with torch.load(weights_only=True): a pickle that would run code
   is refused.
3. Job files and --set values are read with yaml.safe_load: a !!python tag is a one-line error.
4. Train job files are validated like run job files.

Every attack here "runs code" by creating a marker path; each test checks the marker is absent, and
a control shows the same file does create it when loaded the unsafe way, so the check can fail.
"""
import json
import os
import pickle
import random
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pixcap.cli.main import main
from pixcap.models.tiny import build_tiny_models

ROOT = Path(__file__).resolve().parents[1]


class Plant:
    """A pickled object whose unpickling creates `path`: a stand-in for any code a pickle can run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def plant_pickle(path, marker, **plain) -> Path:
    """A torch.save file that holds `plain` values plus one Plant."""
    torch.save({**plain, "payload": Plant(marker)}, path)
    return Path(path)


def refused_pickle(error: BaseException) -> bool:
    """True if the error, or one it was raised from, is torch's weights_only refusal."""
    while error is not None:
        if isinstance(error, pickle.UnpicklingError) or "GLOBAL" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def test_a_planted_pickle_runs_code_when_loaded_unsafely(tmp_path):
    """The control for every pickle test below: the attack works when nothing stops it."""
    marker = tmp_path / "marker"
    path = plant_pickle(tmp_path / "x.pt", marker)
    with pytest.raises(Exception) as safe:
        torch.load(path, weights_only=True)
    assert refused_pickle(safe.value) and not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.exists()


# --- 1. trust_remote_code ---------------------------------------------------------------------

@pytest.fixture
def hf_modules(tmp_path, monkeypatch):
    """transformers copies a folder's custom code into HF_MODULES_CACHE to import it; keep that in tmp."""
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))


def add_custom_code(folder: Path, marker_dir: Path, classes: dict) -> None:
    """Give a model folder custom classes, each in its own module whose import creates marker_dir/MODULE.

    classes: {module: (subclassed transformers class, json file, where in it the auto_map goes, auto key
    [, the class body])}
    """
    marker_dir.mkdir(exist_ok=True)
    for module, (base, file, path, auto_key, *body) in classes.items():
        (folder / f"{module}.py").write_text(
            f"import os\nos.makedirs({str(marker_dir / module)!r}, exist_ok=True)\n"
            f"from transformers import {base}\nclass Custom({base}):\n    {body[0] if body else 'pass'}\n"
        )
        config = json.loads((folder / file).read_text())
        node = config
        for key in path:
            node = node[key]
        # AutoTokenizer's auto_map is a [slow, fast] pair; the others name one class.
        node.setdefault("auto_map", {})[auto_key] = [None, f"{module}.Custom"] if auto_key == "AutoTokenizer" else f"{module}.Custom"
        (folder / file).write_text(json.dumps(config))


# A remote-code folder names its model class too (the hf backend loads any AutoModelForImageTextToText).
LLAVA_CUSTOM_CODE = {
    "custom_config": ("LlavaConfig", "config.json", [], "AutoConfig"),
    "custom_model": ("LlavaForConditionalGeneration", "config.json", [], "AutoModelForImageTextToText",
                     "from .custom_config import Custom as config_class"),
    "custom_processor": ("LlavaProcessor", "processor_config.json", [], "AutoProcessor"),
    "custom_image_processor": ("CLIPImageProcessor", "processor_config.json", ["image_processor"], "AutoImageProcessor"),
    "custom_tokenizer": ("PreTrainedTokenizerFast", "tokenizer_config.json", [], "AutoTokenizer"),
}


def caption_config(model: str, **caption):
    """The caption section of a validated job, so the job's own default for trust_remote_code is used."""
    from pixcap.schemas import load_job

    return load_job({"caption": {"model": model, **caption}}).caption


def test_caption_model_custom_code_runs_only_when_the_job_asks(tmp_path, models_cache, hf_modules):
    from pixcap.stages.caption import CaptionStage

    folder = tmp_path / "custom-llava"
    shutil.copytree(build_tiny_models(models_cache)["llava"], folder)
    markers = tmp_path / "imported"
    add_custom_code(folder, markers, LLAVA_CUSTOM_CODE)

    stage = CaptionStage(caption_config(str(folder)))  # the default job
    assert list(markers.iterdir()) == []
    assert type(stage.processor).__name__ == "LlavaProcessor"  # the built-in class, not the folder's

    # The control: asked for by name, the folder's code does run, so the check above can fail.
    stage = CaptionStage(caption_config(str(folder), trust_remote_code=True))
    assert "custom_processor" in {p.name for p in markers.iterdir()}
    assert type(stage.processor).__name__ == "Custom"


@pytest.fixture(scope="module")
def trainer_models(tmp_path_factory):
    """The tiny T5 and VAE the trainer loads (the DiT is not needed here)."""
    from pixcap.models.tiny_diffusion import build_tiny_t5, build_tiny_vae

    root = tmp_path_factory.mktemp("trainer_models")
    return {"t5": build_tiny_t5(root / "t5"), "vae": build_tiny_vae(root / "vae")}


def test_t5_tokenizer_custom_code_never_runs(tmp_path, trainer_models, hf_modules):
    from transformers import AutoTokenizer

    from pixcap.trainer.text import TextEncoder

    folder = tmp_path / "custom-t5"
    shutil.copytree(trainer_models["t5"], folder)
    markers = tmp_path / "imported"
    add_custom_code(folder, markers, {"custom_t5_tokenizer": ("T5Tokenizer", "tokenizer_config.json", [], "AutoTokenizer")})

    encoder = TextEncoder(str(folder))
    assert list(markers.iterdir()) == [] and type(encoder.tokenizer).__name__ == "T5Tokenizer"
    AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # the control
    assert [p.name for p in markers.iterdir()] == ["custom_t5_tokenizer"]


# --- 2. weights_only ---------------------------------------------------------------------------

def replace_weights(folder: Path, name: str, marker: Path) -> None:
    """Swap a model folder's safetensors for a pickled weights file that plants the marker."""
    for path in folder.glob("*.safetensors"):
        path.unlink()
    plant_pickle(folder / name, marker)


def test_caption_model_pickled_weights_are_refused(tmp_path, models_cache):
    from pixcap.stages.caption import CaptionStage

    folder, marker = tmp_path / "llava", tmp_path / "marker"
    shutil.copytree(build_tiny_models(models_cache)["llava"], folder)
    replace_weights(folder, "pytorch_model.bin", marker)
    with pytest.raises(Exception) as error:
        CaptionStage(caption_config(str(folder)))
    assert refused_pickle(error.value) and not marker.exists()


def test_clip_checkpoint_pickle_is_refused(tmp_path, models_cache):
    from pixcap.schemas.stages import ClipConfig
    from pixcap.stages.clip import ClipStage

    marker = tmp_path / "marker"
    checkpoint = plant_pickle(tmp_path / "clip.pt", marker)
    config = ClipConfig(model=str(build_tiny_models(models_cache)["clip_config"]), pretrained=str(checkpoint))
    with pytest.raises(Exception) as error:
        ClipStage(config)
    assert refused_pickle(error.value) and not marker.exists()


@pytest.mark.parametrize("part, weights", [("t5", "pytorch_model.bin"), ("vae", "diffusion_pytorch_model.bin")])
def test_trainer_model_pickled_weights_are_refused(tmp_path, trainer_models, part, weights):
    from pixcap.trainer.latents import LatentEncoder
    from pixcap.trainer.text import TextEncoder

    folder, marker = tmp_path / part, tmp_path / "marker"
    shutil.copytree(trainer_models[part], folder)
    replace_weights(folder, weights, marker)
    with pytest.raises(Exception) as error:
        (TextEncoder if part == "t5" else LatentEncoder)(str(folder))
    assert refused_pickle(error.value) and not marker.exists()


def tiny_training_state(seed: int = 0):
    """What save_checkpoint / load_checkpoint take: a model, its EMA, AdamW, a scheduler, a generator."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    ema = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()  # so the optimiser has state (exp_avg ...) to save
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    return model, ema, optimizer, scheduler, torch.Generator().manual_seed(seed)


def draws(generator) -> list:
    """One number from every RNG a checkpoint restores."""
    return [random.random(), float(np.random.standard_normal()), float(torch.rand(1)),
            float(torch.rand(1, generator=generator))]


def test_checkpoint_round_trips_every_rng_under_weights_only(tmp_path):
    from pixcap.trainer.checkpoint import load_checkpoint, save_checkpoint

    parts = tiny_training_state()
    random.seed(1)
    np.random.seed(2)
    np.random.standard_normal()  # leaves a cached gaussian: numpy state beyond its key array
    folder = save_checkpoint(tmp_path, 5, *parts, job={"seed": 0}, rank=0)
    expected = draws(parts[-1])
    draws(parts[-1])  # move every RNG on
    assert load_checkpoint(folder, *parts, rank=0) == 5
    assert draws(parts[-1]) == expected
    for name in ("state.pt", "rng-rank0.pt"):
        torch.load(folder / name, weights_only=True)  # plain: loads without any allow-listing


@pytest.mark.parametrize("name", ["state.pt", "rng-rank0.pt"])
def test_checkpoint_pickle_is_refused(tmp_path, name):
    from pixcap.trainer.checkpoint import load_checkpoint, save_checkpoint

    parts = tiny_training_state()
    folder = save_checkpoint(tmp_path, 5, *parts, job={}, rank=0)
    marker = tmp_path / "marker"
    good = torch.load(folder / name, weights_only=True)
    plant_pickle(folder / name, marker, **good)  # the real contents, plus the payload
    with pytest.raises(RuntimeError, match=f"{name}: refused to load: .*GLOBAL posix.mkdir") as error:
        load_checkpoint(folder, *parts, rank=0)
    assert len(str(error.value).splitlines()) == 1 and not marker.exists()


def test_no_unsafe_loading_in_the_source():
    """The project's own code never asks for unsafe loading; enabling it anywhere fails here."""
    unsafe = re.compile(
        r"weights_only\s*=\s*False|trust_remote_code\s*=\s*True|yaml\.load\(|unsafe_load|UnsafeLoader|FullLoader"
        r"|allow_pickle\s*=\s*True|pickle\.loads?\(|torch\.jit\.load"
    )
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for folder in ("schemas", "stages", "pipeline", "trainer", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if unsafe.search(line)
    ]
    assert found == []


# --- 3. YAML: safe_load only; 4. train job validation ------------------------------------------

def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


PYTHON_TAG = '!!python/object/apply:os.system ["touch {marker}"]'


def test_a_python_tag_runs_code_when_loaded_unsafely(tmp_path):
    """The control for the YAML tests: this tag, loaded unsafely, does create the marker."""
    import yaml

    marker = tmp_path / "marker"
    yaml.unsafe_load(f"prompt: {PYTHON_TAG.format(marker=marker)}")
    assert marker.exists()


@pytest.mark.parametrize("command, job_text", [
    ("run", "inputs: [{tmp}/images]\noutput: {tmp}/out\ncaption:\n  prompt: {tag}\n"),
    ("train", "shards: [{tmp}/shards/a.tar]\noutput: {tmp}/out\nsampling_prompts: [{tag}]\n"),
], ids=["run", "train"])
def test_python_tag_in_a_job_file_is_one_line_exit_2(tmp_path, capsys, command, job_text):
    marker = tmp_path / "marker"
    job = tmp_path / "job.yaml"
    job.write_text(job_text.format(tmp=tmp_path, tag=PYTHON_TAG.format(marker=marker)))
    code, out, err = run_cli(capsys, command, job)
    assert code == 2 and out == ""
    assert err.startswith(f"pixcap: error: {job}: not valid YAML") and "python/object/apply" in err
    assert len(err.strip().splitlines()) == 1
    assert not marker.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]


@pytest.mark.parametrize("command, job_text, key", [
    ("run", "inputs: [{tmp}/images]\noutput: {tmp}/out\n", "caption.prompt"),
    ("train", "shards: [{tmp}/shards/a.tar]\noutput: {tmp}/out\n", "text_encoder"),
], ids=["run", "train"])
def test_python_tag_in_a_set_value_is_one_line_exit_2(tmp_path, capsys, command, job_text, key):
    """A --set value that YAML refuses as a tag is refused too, not kept as text for a string key."""
    marker = tmp_path / "marker"
    job = tmp_path / "job.yaml"
    job.write_text(job_text.format(tmp=tmp_path))
    code, out, err = run_cli(capsys, command, job, "--set", f"{key}={PYTHON_TAG.format(marker=marker)}")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert f"--set {key}" in err and "python/object/apply" in err, err
    assert not marker.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]


@pytest.mark.parametrize("job_text, message", [
    ("max_step: 5\n", "unknown key max_step"),
    ("filters:\n  min_clip: 0.2\n", "unknown key filters.min_clip"),
    ("batch_size: eight\n", "batch_size: expected int, got str 'eight'"),
    ("sampling_prompts: 3\n", "sampling_prompts: expected a list, got int"),
    ("filters: strict\n", "filters: expected a mapping, got str"),
])
def test_bad_train_job_files_exit_2_with_one_line_naming_the_key(tmp_path, capsys, job_text, message):
    job = tmp_path / "job.yaml"
    job.write_text(f"shards: [{tmp_path}/a.tar]\noutput: {tmp_path}/out\n" + job_text)
    code, out, err = run_cli(capsys, "train", job)
    assert code == 2 and out == "" and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]
