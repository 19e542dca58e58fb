"""Features record the T5 and the VAE that made them: training with other ones is refused, and so is
adding shards made by other ones to an encoded folder; encode has no tiny default."""
import shutil

import numpy as np
import pytest

from pixcap.schemas import JobError
from pixcap.trainer.encode import encode_shards
from pixcap.trainer.features import NULL_CAPTION, REVISIONS
from pixcap.trainer.loop import train

from .shards_fixture import tiny_train_job, write_shards


def another(model_dir, tmp_path, name):
    """A copy of a tiny model whose config differs by a trailing newline: the same weights as far as
    loading goes, another revision as far as its files go."""
    copy = tmp_path / name
    shutil.copytree(model_dir, copy)
    with open(copy / "config.json", "a") as f:
        f.write("\n")
    return str(copy)


@pytest.fixture(scope="module")
def features(tmp_path_factory, tiny_trainer_models):
    root = tmp_path_factory.mktemp("feature-models")
    write_shards(root / "raw", n_shards=1, per_shard=2)
    assert encode_shards([str(root / "raw" / "*.tar")], str(root / "encoded"), text_encoder=str(tiny_trainer_models["t5"]),
                         vae=str(tiny_trainer_models["vae"]), models_cache=str(root / "cache")) == []
    return root


def test_encode_records_both_models_revisions(features):
    with np.load(features / "encoded" / NULL_CAPTION) as stored:
        revisions = {key: stored[key].item() for key in REVISIONS}
    # A local model is named by the sha256 of its files, so another copy with other files is another revision.
    assert set(revisions) == {"text_encoder_revision", "vae_revision"}
    assert all(value.startswith("sha256:") and len(value) == len("sha256:") + 64 for value in revisions.values())
    assert revisions["text_encoder_revision"] != revisions["vae_revision"]


@pytest.mark.parametrize("component", ["text_encoder", "vae"])
def test_training_with_another_model_than_encoded_is_refused(features, tiny_trainer_models, tmp_path, component):
    models = {"t5": tiny_trainer_models["t5"], "vae": tiny_trainer_models["vae"]}
    models["t5" if component == "text_encoder" else "vae"] = another(models["t5" if component == "text_encoder" else "vae"],
                                                                     tmp_path, component)
    job = tiny_train_job([str(features / "encoded" / "*.tar")], tmp_path / "run", models, max_steps=1)
    with pytest.raises(JobError, match=f"^{component}: .*{NULL_CAPTION} was encoded with {component} sha256:"):
        train(job)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_same_models_train(features, tiny_trainer_models, tmp_path):
    job = tiny_train_job([str(features / "encoded" / "*.tar")], tmp_path / "run", tiny_trainer_models, max_steps=1,
                         checkpoint_every=1)
    assert train(job)["step"] == 1


def test_encoding_into_a_folder_made_by_another_vae_is_refused(features, tiny_trainer_models, tmp_path):
    folder = tmp_path / "encoded"
    shutil.copytree(features / "encoded", folder)
    (folder / "shard-00000.tar").unlink()  # one shard left to do, so the models are loaded and compared
    with pytest.raises(JobError, match="^vae: output .* was encoded with vae sha256:"):
        encode_shards([str(features / "raw" / "*.tar")], str(folder), text_encoder=str(tiny_trainer_models["t5"]),
                      vae=another(tiny_trainer_models["vae"], tmp_path, "vae"), models_cache=str(tmp_path / "cache"))
    assert sorted(p.name for p in folder.iterdir()) == [NULL_CAPTION]


def test_encode_has_no_tiny_default():
    import argparse

    from pixcap.schemas.models import DEFAULT_T5, DEFAULT_VAE, TINY_PREFIX
    from pixcap.trainer.cli import add_encode_args

    parser = argparse.ArgumentParser()
    add_encode_args(parser)
    args = parser.parse_args(["a.tar", "--output", "out"])
    assert (args.text_encoder, args.vae) == (DEFAULT_T5, DEFAULT_VAE)
    assert not any(value.startswith(TINY_PREFIX) for value in (args.text_encoder, args.vae))
