"""The image-classifier stage (classifiers:), on the tiny ViT classifier with Falconsai's labels, and the
registry's listed instances: the job keys, the record's column, the fingerprint, the shard's stats."""
import json
import math
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pixcap.schemas import JobError, load_job
from pixcap.schemas import batch as B
from pixcap.schemas import stages as registry
from pixcap.schemas.stages import ClassifierConfig
from pixcap.stages.classify import ClassifierStage, check_classifier, label_index

from tests.tiny_jobs import with_tiny_models


@pytest.fixture(scope="module")
def nsfw(tiny_models):
    return ClassifierConfig(column="nsfw_score", model=str(tiny_models["nsfw"]), label="nsfw", batch_size=2)


@pytest.fixture(scope="module")
def stage(nsfw):
    return ClassifierStage(nsfw)


def reference_probability(folder, image: np.ndarray, label: int) -> float:
    """The model run by hand, one image alone: its own processor's pixels, the softmax in numpy."""
    from transformers import AutoImageProcessor, ViTForImageClassification

    model = ViTForImageClassification.from_pretrained(folder).eval()
    pixels = AutoImageProcessor.from_pretrained(folder)(images=[image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits[0].numpy().astype(np.float64)
    exp = np.exp(logits - logits.max())
    return float(exp[label] / exp.sum())


def test_the_column_is_the_labels_probability(stage, nsfw, model_images, stage_batch):
    images = model_images(3)
    out = stage(stage_batch(images))
    scores = out["nsfw_score"]
    assert scores.dtype == np.float32 and out[B.REJECT_REASON] == ["", "", ""]
    expected = [reference_probability(nsfw.model, image, 1) for image in images]
    assert np.allclose(scores, expected, atol=1e-5)
    assert len(set(np.round(scores, 5))) == 3  # the images differ, and so do their scores


def test_the_other_label_is_the_complement_and_batching_changes_nothing(nsfw, model_images, stage_batch):
    images = model_images(5, seed=4)
    nsfw_scores = ClassifierStage(nsfw)(stage_batch(images))["nsfw_score"]
    normal = ClassifierConfig(column="normal_score", model=nsfw.model, label="NORMAL", batch_size=5)  # case ignored
    normal_scores = ClassifierStage(normal)(stage_batch(images))["normal_score"]
    assert np.allclose(nsfw_scores + normal_scores, 1.0, atol=1e-5)


def test_rejected_rows_get_no_score_and_a_bad_image_is_a_reject(stage, model_images, stage_batch):
    good = model_images(3, seed=5)
    images = np.empty(4, dtype=object)
    images[:] = [good[0], np.zeros((0, 0, 3), np.uint8), good[1], good[2]]
    batch = stage_batch(images)
    batch[B.REJECT_STAGE][3], batch[B.REJECT_REASON][3] = "decode", "too_small"
    out = stage(batch)
    assert out[B.REJECT_REASON] == ["", "classify_error", "", "too_small"]
    assert out[B.REJECT_STAGE][:2] == ["", "classifiers.nsfw_score"] and out[B.REJECT_ERROR][1]
    assert math.isnan(out["nsfw_score"][1]) and math.isnan(out["nsfw_score"][3])
    alone = stage(stage_batch([good[0], good[1]]))["nsfw_score"]
    assert np.allclose([out["nsfw_score"][0], out["nsfw_score"][2]], alone, atol=1e-6)


def test_a_label_the_model_lacks_is_one_line_naming_its_labels(nsfw):
    assert check_classifier(nsfw) == ""
    problem = check_classifier(ClassifierConfig(column="nsfw_score", model=nsfw.model, label="porn"))
    assert "'porn' is not one of the model's labels: normal, nsfw" in problem and "\n" not in problem
    with pytest.raises(ValueError):
        label_index({0: "a", 1: "A"}, "a ")


def classifier_job(models_cache, *classifiers):
    return with_tiny_models({"models_cache": models_cache, "classifiers": list(classifiers)})


def test_a_job_lists_several_classifiers_each_an_instance_with_its_column(models_cache):
    job = load_job(classifier_job(models_cache, {"column": "nsfw_score", "model": "tiny:nsfw", "label": "nsfw"},
                                  {"column": "safe_score", "model": "tiny:nsfw", "label": "normal", "batch_size": 8}))
    names = [found.name for found in registry.model_stages(job)]
    assert names[:2] == ["classifiers.nsfw_score", "classifiers.safe_score"]
    schema = registry.record_schema(job)
    assert schema.field("nsfw_score").type == pa.float32() and schema.names[-2:] == ["nsfw_score", "safe_score"]
    assert "classifiers.safe_score" in registry.progress_stages(job)


@pytest.mark.parametrize("entry, expected", [
    ({"column": "Bad Name", "model": "tiny:nsfw", "label": "nsfw"}, "classifiers[0].column: 'Bad Name' is not a name"),
    ({"column": "clip_score", "model": "tiny:nsfw", "label": "nsfw"}, "column clip_score would be written twice"),
    ({"column": "x", "model": "tiny:nsfw", "label": "nsfw", "batch_size": 0}, "classifiers[0].batch_size: must be positive"),
    ({"column": "x", "model": "tiny:nsfw", "labels": "nsfw"}, "unknown key classifiers[0].labels; did you mean classifiers[0].label?"),
    ({"column": "x", "label": "nsfw"}, "classifiers.x.model: no model named"),
    ("nsfw", "classifiers[0]: expected a mapping"),
])
def test_wrong_classifier_keys_are_one_line(models_cache, entry, expected):
    with pytest.raises(JobError) as error:
        load_job(classifier_job(models_cache, entry))
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_two_classifiers_of_one_column_are_refused(models_cache):
    entry = {"column": "nsfw_score", "model": "tiny:nsfw", "label": "nsfw"}
    with pytest.raises(JobError, match=r"classifiers\[1\].column: 'nsfw_score' is named twice"):
        load_job(classifier_job(models_cache, entry, entry))


def test_the_label_is_checked_when_the_models_are_resolved(models_cache):
    from pixcap.pipeline.models import resolve_models

    job = load_job(classifier_job(models_cache, {"column": "nsfw_score", "model": "tiny:nsfw", "label": "porn"}))
    with pytest.raises(JobError, match="is not one of the model's labels: normal, nsfw"):
        resolve_models(job)


def test_the_fingerprint_holds_each_classifier_and_none_without_them(models_cache):
    from pixcap.output.fingerprint import fingerprint

    plain = fingerprint(load_job(with_tiny_models({})), {})
    assert not any(key.startswith("classifiers") for key in plain)
    job = load_job(classifier_job(models_cache, {"column": "nsfw_score", "model": "tiny:nsfw", "label": "nsfw"}))
    found = fingerprint(job, {"classifiers.nsfw_score": "sha256:x"})
    assert found["classifiers.nsfw_score.label"] == "nsfw" and found["revision.classifiers.nsfw_score"] == "sha256:x"
    assert "classifiers.nsfw_score.batch_size" not in found  # speed, not content
    assert {k: v for k, v in found.items() if not k.startswith(("classifiers", "revision"))} == plain


def test_a_shard_commits_the_score_to_its_stats_and_record(tmp_path, models_cache):
    from pixcap.output.commit import commit_shard
    from pixcap.output.fragments import FragmentWriter
    from pixcap.output.storage import Storage
    from pixcap.schemas.fragments import fragment_schema
    from tests.output.batches import finished_batch

    job = load_job(classifier_job(models_cache, {"column": "nsfw_score", "model": "tiny:nsfw", "label": "nsfw"}))
    storage = Storage(str(tmp_path))
    batch = finished_batch("p-00000", [0, 1, 2], count=3, rejected={1})
    batch["nsfw_score"] = np.array([0.25, np.nan, 0.75], np.float32)
    fragment = FragmentWriter(storage, fragment_schema(registry.record_schema(job)))(batch)["fragment"][0]
    commit_shard(storage, "p-00000", [fragment])
    stats = pq.read_table(tmp_path / "stats" / "p-00000.parquet")
    assert stats.schema.field("nsfw_score").type == pa.float32()
    assert stats.column("nsfw_score").to_pylist() == [0.25, 0.75]
    with tarfile.open(tmp_path / "shards" / "p-00000.tar") as tar:
        record = json.load(tar.extractfile("p/k2.json"))
    assert record["nsfw_score"] == 0.75
