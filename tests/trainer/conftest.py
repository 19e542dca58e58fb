import pytest


@pytest.fixture(scope="session")
def tiny_trainer_models(models_cache) -> dict:
    """Paths of the tiny T5 ("t5"), VAE ("vae") and DiT ("dit"), from the session's models cache."""
    from pixcap.models.tiny import build_tiny_models

    return build_tiny_models(models_cache)
