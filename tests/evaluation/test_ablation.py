"""The data ablation end to end on tiny models, as one command: `pixcap ablate OUT` selects the top
and bottom halves by clip_score, trains the same job on each, evaluates both models on one prompt
set, and writes one report with both subsets' Table 1 and both models' scores."""
import json
import re

import duckdb
import pytest

from pixcap.schemas.manifest import STATS_DIR


from .conftest import eval_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def parent(subset_parent):
    return subset_parent


def test_ablation_recipe_end_to_end(tmp_path, parent, models_cache):
    from pixcap.cli.main import main

    train_job = tmp_path / "train.yaml"
    train_job.write_text(
        f"model: tiny\nresolution: 256\ntext_encoder: tiny:t5\nvae: tiny:vae\nmodels_cache: {models_cache}\n"
        "max_steps: 2\nbatch_size: 2\nlr: 1.0e-4\nlr_scaling: none\nwarmup_steps: 1\nema_decay: 0.9\n"
        "shuffle_buffer: 4\nnum_workers: 0\ncheckpoint_every: 2\nsampling_prompts: []\nclean_captions: false\n")
    settings = [s for s in eval_settings(models_cache)]
    settings += ["--set", "images_per_prompt=1", "--set", "prompts_per_category=1"]
    abl = tmp_path / "abl"
    assert main(["ablate", str(parent), "--out", str(abl), "--train-job", str(train_job), "--prompts", "geneval",
                 *settings]) == 0
    scores = {}
    for half in ("top", "bottom"):
        rows = duckdb.sql(f"SELECT clip_score FROM read_parquet('{abl / half / STATS_DIR}/*.parquet')").fetchall()
        scores[half] = [r[0] for r in rows]
    assert len(scores["top"]) == 6 and scores["bottom"]  # 12 samples: the top half, and below its lowest
    assert min(scores["top"]) > max(scores["bottom"])
    for half in ("top", "bottom"):
        assert (abl / "runs" / half / "pipeline" / "model_index.json").is_file()
        summary = json.loads((abl / "evals" / f"{half}-model" / "summary.json").read_text())
        assert summary["images"] == 6 and summary["fid"]["clip_fid"] is not None
    html = (abl / "report.html").read_text()
    table1 = re.search(r'<table id="concept-density">.*?</table>', html, re.S).group(0)
    assert "<th>top</th><th>bottom</th>" in table1
    models = re.search(r'<table id="eval-scores">.*?</table>', html, re.S).group(0)
    assert "<th>top-model</th><th>bottom-model</th>" in models
    # run again: everything is done, nothing is redone, the same report
    assert main(["ablate", str(parent), "--out", str(abl), "--train-job", str(train_job), "--prompts", "geneval",
                 *settings]) == 0
