"""DreamBooth: a subject folder and the base model's class images become pixcap outputs (`pixcap run` with
sidecar captions), and the trainer learns the subject with prior preservation, with full training and with
LoRA, resuming bit for bit."""
import json

import duckdb
import numpy as np
import pytest
import torch
from PIL import Image

from pixcap.schemas import MANIFEST_NAME, JobError
from pixcap.schemas.records import CAPTION, KEY
from pixcap.trainer.class_images import class_images
from pixcap.trainer.checkpoint import latest_checkpoint
from pixcap.trainer.dreambooth import INSTANCES, join, prior_weighted_loss
from pixcap.trainer.export import export_pipeline
from pixcap.trainer.loop import train
from pixcap.trainer.model import build_transformer

from .shards_fixture import tiny_train_job, write_shards
from .test_resume import assert_same, losses


def test_the_loss_weights_the_class_half():
    per_sample = torch.tensor([1.0, 3.0, 10.0, 20.0, 30.0])
    batch = {INSTANCES: 2}
    assert prior_weighted_loss(per_sample, batch, 0.5).item() == pytest.approx((1 + 3) / 2 + 0.5 * (10 + 20 + 30) / 3)
    assert prior_weighted_loss(per_sample, {}, 0.5).item() == pytest.approx(64 / 5)  # no prior: the plain mean


def test_join_puts_instances_first():
    instance = {KEY: ["a", "b"], CAPTION: ["sks", "sks"], "pixels": torch.zeros(2, 3, 8, 8), "skipped": {"x": 1}}
    prior = {KEY: ["c"], CAPTION: ["dog"], "pixels": torch.ones(1, 3, 8, 8), "skipped": {"x": 2}}
    joined = join(instance, prior)
    assert joined[KEY] == ["a", "b", "c"] and joined[INSTANCES] == 2
    assert torch.equal(joined["pixels"][2], torch.ones(3, 8, 8)) and joined["skipped"] == {"x": 1, "class:x": 2}
    with pytest.raises(JobError, match="both be raw"):
        join(instance, {**prior, "posterior": torch.ones(1, 8, 1, 1)})


@pytest.fixture(scope="module")
def base(tiny_trainer_models, tmp_path_factory):
    transformer = build_transformer("tiny", 256, caption_channels=32, seed=3)
    torch.nn.init.normal_(transformer.proj_out.weight, std=0.05)
    folder = tmp_path_factory.mktemp("base") / "pipeline"
    export_pipeline(transformer, str(tiny_trainer_models["t5"]), str(tiny_trainer_models["vae"]), folder,
                    train_job={"clean_captions": False})
    return folder


def test_class_images_are_resumable(base, tmp_path):
    out = tmp_path / "class"
    paths = class_images(base, "a photo of a dog", 3, out, steps=2, batch_size=2, clean_captions=False)
    assert [p.name for p in paths] == ["class_00000.png", "class_00001.png", "class_00002.png"]
    assert all(p.with_suffix(".txt").read_text() == "a photo of a dog\n" for p in paths)
    first = {p.name: p.read_bytes() for p in paths}
    kept = paths[0].stat().st_mtime_ns
    paths[1].unlink()  # as a kill between two images leaves it
    paths[2].with_suffix(".txt").unlink()
    again = class_images(base, "a photo of a dog", 4, out, steps=2, batch_size=3, clean_captions=False)
    assert {p.name: p.read_bytes() for p in again[:3]} == first  # the same images, whatever the batch
    assert paths[0].stat().st_mtime_ns == kept and again[3].exists()
    assert paths[2].with_suffix(".txt").exists() and not (tmp_path / "class.partial").exists()
    assert np.asarray(Image.open(again[0])).std() > 0


@pytest.mark.slow
def test_resume_with_prior_preservation_equals_one_run(base, tiny_trainer_models, tmp_path):
    subject = write_shards(tmp_path / "subject", n_shards=1, per_shard=4, seed=1)
    classes = write_shards(tmp_path / "class", n_shards=2, per_shard=4, seed=2)
    settings = dict(load_from=str(base), checkpoint_every=2, clean_captions=False, adapter="lora", lr=1e-2,
                    batch_size=1, lora={"rank": 2}, prior={"class_shards": classes, "loss_weight": 0.5})
    train(tiny_train_job(subject, tmp_path / "once", tiny_trainer_models, max_steps=3, **settings))
    train(tiny_train_job(subject, tmp_path / "twice", tiny_trainer_models, max_steps=1, **settings))
    train(tiny_train_job(subject, tmp_path / "twice", tiny_trainer_models, max_steps=3, **settings))
    a = torch.load(latest_checkpoint(tmp_path / "once") / "state.pt", weights_only=True)
    b = torch.load(latest_checkpoint(tmp_path / "twice") / "state.pt", weights_only=True)
    for part in ("model", "ema", "optimizer", "scheduler"):
        assert_same(a[part], b[part], part)
    assert losses(tmp_path / "once") == losses(tmp_path / "twice")


def test_prior_preservation_needs_square_buckets():
    from pixcap.schemas import load_train_job

    with pytest.raises(JobError, match="prior.class_shards: prior preservation needs buckets: square"):
        load_train_job({"prior": {"class_shards": ["x.tar"]}, "buckets": "aspect"})
    with pytest.raises(JobError, match="prior.loss_weight: must not be negative"):
        load_train_job({"prior": {"loss_weight": -1.0}})


def demo_subject(folder, prompt: str, count: int = 5):
    """`count` demo photographs with a sidecar caption each: a DreamBooth subject folder."""
    from pixcap.demo.sa1b import demo_images

    folder.mkdir(parents=True)
    for i, photo in enumerate(demo_images()[::3][:count]):  # each photograph once, not its variants
        photo.save(folder / f"photo_{i}.jpg", quality=90)
        (folder / f"photo_{i}.txt").write_text(prompt)
    return folder


@pytest.fixture(scope="module")
def dreambooth_outputs(base, models_cache, ray_session, tmp_path_factory):
    """The README's first three commands, on the session's Ray: pixcap run (subject), class-images,
    pixcap run (class). Returns (subject output, class output)."""
    from pixcap.cli.main import main

    root = tmp_path_factory.mktemp("dreambooth")
    subject = demo_subject(root / "subject", "a photo of sks dog")
    run = ["run", "jobs/dreambooth_photos.yaml", "--set", f"models_cache={models_cache}", "--set", "shard_size=4"]
    assert main([*run, "--input", str(subject), "--output", str(root / "subject_out")]) == 0
    assert main(["class-images", str(base), "--prompt", "a photo of a dog", "--count", "4", "--steps", "2",
                 "--output", str(root / "class_images")]) == 0
    assert main([*run, "--input", str(root / "class_images"), "--output", str(root / "class_out")]) == 0
    return root / "subject_out", root / "class_out"


@pytest.mark.slow
def test_subject_and_class_images_are_pixcap_outputs(dreambooth_outputs):
    subject, classes = dreambooth_outputs
    for out, captions in ((subject, {"a photo of sks dog"}), (classes, {"a photo of a dog"})):
        manifest = json.loads((out / MANIFEST_NAME).read_text())
        assert manifest["totals"]["written"] == (5 if out == subject else 4)
        assert manifest["totals"]["rejected"] == 0
        written = duckdb.sql(f"select caption from '{out}/stats/*.parquet'").fetchall()
        assert {caption.strip() for (caption,) in written} == captions


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["none", "lora"])
def test_dreambooth_trains_on_them(adapter, dreambooth_outputs, base, tiny_trainer_models, tmp_path):
    """The README's last command, with full training and with LoRA."""
    subject, classes = dreambooth_outputs
    job = tiny_train_job([str(subject / "shards" / "*.tar")], tmp_path / "train", tiny_trainer_models,
                         load_from=str(base), max_steps=2, batch_size=1, adapter=adapter, caption_dropout=0.0,
                         clean_captions=False, prior={"class_shards": [str(classes / "shards" / "*.tar")]})
    assert train(job)["step"] == 2
    log = [json.loads(line) for line in (tmp_path / "train" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(entry["loss"]) for entry in log)
    assert (tmp_path / "train" / ("lora" if adapter == "lora" else "pipeline")).exists()


@pytest.mark.parametrize("name", ["train_tiny_lora", "train_tiny_controlnet", "train_tiny_dreambooth",
                                  "train_dreambooth_1024", "dreambooth_photos"])
def test_the_shipped_jobs_are_valid(name):
    from pixcap.schemas import load_job, load_train_job, read_job_yaml

    data = read_job_yaml(f"jobs/{name}.yaml", [])
    (load_job if name == "dreambooth_photos" else load_train_job)(data)


def test_the_official_dreambooth_recipe():
    """PixArt_xl2_img1024_dreambooth.py: XL-2 at 1024, lr 5e-6 unscaled, batch 1, clip 0.01, no warm-up."""
    from pixcap.schemas import load_train_job, read_job_yaml

    job = load_train_job(read_job_yaml("jobs/train_dreambooth_1024.yaml", []))
    assert (job.model, job.resolution, job.lr, job.lr_scaling, job.batch_size) == ("XL-2", 1024, 5e-6, "none", 1)
    assert (job.grad_clip, job.warmup_steps, job.gradient_checkpointing) == (0.01, 0, True)
    assert job.prior.class_shards and job.caption_dropout == 0.0
