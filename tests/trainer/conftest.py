import pytest

from pixcap.trainer.tiny import build_tiny_trainer_models


@pytest.fixture(scope="session")
def tiny_trainer_models(tmp_path_factory) -> dict:
    """Paths of the tiny T5 ("t5"), VAE ("vae") and DiT ("dit"), built once per session."""
    return build_tiny_trainer_models(tmp_path_factory.mktemp("tiny_trainer_models"))
