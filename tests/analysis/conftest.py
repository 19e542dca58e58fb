"""A real output for the report tests: the session's one pipeline run (tests/conftest.py's
pipeline_run: the end-to-end tests' collection, two SA-1B tars and a folder with three broken
inputs among them, run with the tiny models)."""
import pytest


@pytest.fixture(scope="session")
def pipeline_output(pipeline_run):
    """(output folder, manifest); shared with the pipeline tests, so read-only."""
    return pipeline_run.out, pipeline_run.manifest
