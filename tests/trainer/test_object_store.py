"""Training and encoding from shards on S3 (moto's server on 127.0.0.1): globs expand through
fsspec, workers stream the objects, and a resumed run equals one run."""
import fsspec
import pytest

from pixcap.trainer.encode import encode_shards
from pixcap.trainer.loop import train

from .shards_fixture import tiny_train_job, write_shards
from .test_resume import assert_resume_is_exact, final_state

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_shards(tmp_path, bucket):
    local = write_shards(tmp_path / "local", n_shards=2, per_shard=4)
    fs = fsspec.filesystem("s3")
    for path in local:
        fs.put_file(path, f"{bucket}/ds/shards/{path.rsplit('/', 1)[-1]}")
    fs.invalidate_cache()
    return f"{bucket}/ds/shards/*.tar"


def test_training_from_s3_resumes_exactly(tmp_path, s3_shards, tiny_trainer_models):
    assert_resume_is_exact(tmp_path, [s3_shards], tiny_trainer_models, max_steps=4, stop_at=2,
                           checkpoint_every=2, num_workers=2)


def test_encode_reads_s3_and_training_streams_its_features_from_s3(tmp_path, s3_shards, tiny_trainer_models, bucket):
    features = tmp_path / "features"
    assert encode_shards([s3_shards], str(features), text_encoder=str(tiny_trainer_models["t5"]),
                         vae=str(tiny_trainer_models["vae"]), models_cache=str(tmp_path / "cache"), batch_size=4) == []
    fs = fsspec.filesystem("s3")
    for path in features.iterdir():  # features published to the bucket, as a training job reads them
        fs.put_file(str(path), f"{bucket}/ds/features/{path.name}")
    fs.invalidate_cache()
    train(tiny_train_job([f"{bucket}/ds/features/*.tar"], tmp_path / "run", tiny_trainer_models, max_steps=2,
                         null_caption=f"{bucket}/ds/features/null_caption.npz"))
    assert final_state(tmp_path / "run")["step"] == 2
