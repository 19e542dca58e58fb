"""Session fixtures: one local Ray for the whole session, and the tiny offline models."""
import os

import pytest

# The S3 server's fixtures; importing the module sets the AWS variables before Ray starts.
from .object_store import bucket, s3_server  # noqa: F401


@pytest.fixture(scope="session")
def ray_session():
    """Ray is started once per test session; starting it costs seconds on two cores. Like the
    Ray pixcap starts itself, it listens on 127.0.0.1 only."""
    import ray

    from pixcap.pipeline.engine import loopback_options

    # "local": a Ray of the session's own, even where `ray start` left one running on this machine.
    ray.init(address="local", num_cpus=2, log_to_driver=False, configure_logging=False, **loopback_options())
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
