"""The graph as the driver builds it: the `pixcap run` driver imports no stage, so no model library.

The stages import torch, transformers, spaCy and open_clip (2-3 s of CPU, and hundreds of MiB);
they run in Ray's tasks and actors, which import them there. What the driver does before and while
it builds the graph (resolving the models, their revisions, the record schema, each pool's stage)
runs here in a fresh interpreter, which then says which of those libraries it imported.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL_LIBRARIES = ("torch", "transformers", "spacy", "open_clip", "webdataset")

DRIVER = """
import json, sys
from pixcap.output.revisions import model_revisions
from pixcap.pipeline import run
from pixcap.pipeline.graph import _counted, model_inputs_arguments
from pixcap.pipeline.models import resolve_models
from pixcap.schemas import load_job, read_job_yaml
from pixcap.schemas import stages as registry

data = read_job_yaml("jobs/local.yaml")
data.update(models_cache=sys.argv[1], output=sys.argv[2])
job = resolve_models(load_job(data))
revisions = model_revisions(job)
registry.record_schema(job)
model_inputs_arguments(job)
pools = [_counted(found.stage_path(), found.name, None).__name__ for found in registry.model_stages(job)]
print(json.dumps({"pools": pools, "revisions": sorted(revisions),
                  "imported": [name for name in json.loads(sys.argv[3]) if name in sys.modules]}))
"""


def test_the_driver_builds_the_graph_without_importing_a_model_library(models_cache, tmp_path):
    done = subprocess.run([sys.executable, "-c", DRIVER, models_cache, str(tmp_path / "out"), json.dumps(MODEL_LIBRARIES)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["pools"] == ["CaptionStage", "NounsStage", "ClipStage"]  # the actors' names, as Ray shows them
    assert found["revisions"] == ["caption", "clip", "nouns"]
    assert found["imported"] == [], f"the driver imported {found['imported']}"
