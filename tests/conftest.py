"""Session fixtures: one local Ray for the whole session, and the tiny offline models."""
import os

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """Ray is started once per test session; starting it costs seconds on two cores."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def models_cache(tmp_path_factory):
    """A models cache with the tiny models built once; jobs name them as tiny:llava, tiny:clip."""
    from pixcap.models.tiny import build_tiny_models

    root = tmp_path_factory.mktemp("models")
    build_tiny_models(str(root))
    return str(root)


@pytest.fixture(autouse=True, scope="session")
def _quiet_tokenizers():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield
