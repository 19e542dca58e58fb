"""The aesthetic stage: LAION's predictor format, scores on the CLIP embedding, rows without one."""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixcap.schemas import batch as cols
from pixcap.schemas.stages import AestheticConfig, ClipConfig
from pixcap.schemas.records import AESTHETIC_SCORE
from pixcap.stages.aesthetic import AestheticStage
from pixcap.stages.clip import ClipStage

# LAION's sac+logos+ava1-l14-linearMSE.pth: the Linear layers of its Sequential, at these positions.
LAION_KEYS = {f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}


def laion_score(state: dict, vector: np.ndarray) -> float:
    """The predictor written out from its state dict alone: five affine maps on the unit vector."""
    x = torch.from_numpy(vector.astype(np.float32))
    x = x / x.norm()
    for i in (0, 2, 4, 6, 7):
        x = F.linear(x, state[f"layers.{i}.weight"], state[f"layers.{i}.bias"])
    return float(x)


def embedding_batch(vectors: list, reasons=None) -> dict:
    n = len(vectors)
    return {
        cols.KEY: [f"part/{i}" for i in range(n)],
        cols.CLIP_EMBEDDING: [b"" if v is None else v.astype(np.float16).tobytes() for v in vectors],
        cols.REJECT_STAGE: ["" if not r else "decode" for r in (reasons or [""] * n)],
        cols.REJECT_REASON: reasons or [""] * n,
        cols.REJECT_ERROR: [""] * n,
    }


def test_the_tiny_predictor_is_saved_in_laion_s_format(tiny_models):
    state = torch.load(tiny_models["aesthetic"], weights_only=True)
    assert set(state) == LAION_KEYS
    assert state["layers.0.weight"].shape == (1024, 32)  # the tiny CLIP's embedding width
    assert [state[f"layers.{i}.weight"].shape[0] for i in (0, 2, 4, 6, 7)] == [1024, 128, 64, 16, 1]


def test_scores_are_laion_s_mlp_on_the_normalised_embedding(tiny_models):
    state = torch.load(tiny_models["aesthetic"], weights_only=True)
    rng = np.random.default_rng(0)
    vectors = [rng.normal(size=32) * scale for scale in (1.0, 0.1, 7.0)]  # any length: it is normalised
    out = AestheticStage(AestheticConfig(str(tiny_models["aesthetic"]), batch_size=2))(embedding_batch(vectors))
    expected = [laion_score(state, v.astype(np.float16).astype(np.float32)) for v in vectors]
    np.testing.assert_allclose(out[AESTHETIC_SCORE], expected, rtol=1e-4, atol=1e-5)
    assert out[AESTHETIC_SCORE].dtype == np.float32
    assert out[cols.CLIP_EMBEDDING] == embedding_batch(vectors)[cols.CLIP_EMBEDDING]  # read, not consumed


def test_rows_without_an_embedding_pass_through_unscored(tiny_models):
    rng = np.random.default_rng(1)
    vectors = [rng.normal(size=32), None, rng.normal(size=32)]
    batch = embedding_batch(vectors, reasons=["", "decode_error", "too_small"])
    out = AestheticStage(AestheticConfig(str(tiny_models["aesthetic"])))(batch)
    scores = out[AESTHETIC_SCORE]
    assert math.isfinite(scores[0]) and math.isnan(scores[1]) and math.isnan(scores[2])
    assert out[cols.REJECT_REASON] == ["", "decode_error", "too_small"]


def test_scores_follow_the_clip_stage_s_embeddings(tiny_models, model_images, stage_batch):
    clip = ClipStage(ClipConfig(model=str(tiny_models["clip_config"]), pretrained=str(tiny_models["clip_checkpoint"])))
    images = model_images(3)
    scored = clip(stage_batch(images, caption=["a dog", "a cat", "a tree"], nouns=[[], [], []]))
    out = AestheticStage(AestheticConfig(str(tiny_models["aesthetic"])))(scored)
    state = torch.load(tiny_models["aesthetic"], weights_only=True)
    expected = [laion_score(state, np.frombuffer(e, dtype=np.float16)) for e in scored[cols.CLIP_EMBEDDING]]
    np.testing.assert_allclose(out[AESTHETIC_SCORE], expected, rtol=1e-4, atol=1e-5)


def test_safetensors_weights_load_the_same(tiny_models, tmp_path):
    from safetensors.torch import save_file

    state = torch.load(tiny_models["aesthetic"], weights_only=True)
    path = tmp_path / "aesthetic.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    vectors = [np.random.default_rng(2).normal(size=32)]
    a = AestheticStage(AestheticConfig(str(tiny_models["aesthetic"])))(embedding_batch(vectors))[AESTHETIC_SCORE]
    b = AestheticStage(AestheticConfig(str(path)))(embedding_batch(vectors))[AESTHETIC_SCORE]
    np.testing.assert_array_equal(a, b)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PIXCAP_TEST_MARKER']}",))


def test_weights_that_would_run_code_are_refused(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("PIXCAP_TEST_MARKER", str(marker))
    path = tmp_path / "evil.pth"
    torch.save({"layers.0.weight": _Payload()}, path)
    with pytest.raises(Exception, match="(?i)weights.only|unpickl"):
        AestheticStage(AestheticConfig(str(path)))
    assert not marker.exists()


def test_weights_for_another_clip_stop_the_stage(tiny_models):
    stage = AestheticStage(AestheticConfig(str(tiny_models["aesthetic"])))
    with pytest.raises(ValueError, match="32-dim.*gives 768"):
        stage(embedding_batch([np.ones(768)]))


def test_a_row_the_predictor_fails_on_is_a_reject_row_and_its_neighbours_are_scored(tiny_models, monkeypatch):
    rng = np.random.default_rng(2)
    vectors = [rng.normal(size=32) for _ in range(4)]
    stage = AestheticStage(AestheticConfig(str(tiny_models["aesthetic"]), batch_size=4))
    real_score = stage.score
    poisoned = vectors[2].astype(np.float16).astype(np.float32)

    def score(x):
        if any(np.allclose(row, poisoned) for row in x):
            raise RuntimeError("a NaN in the weights' path")
        return real_score(x)

    monkeypatch.setattr(stage, "score", score)
    out = stage(embedding_batch(vectors))
    assert out[cols.REJECT_REASON] == ["", "", "aesthetic_error", ""]
    assert out[cols.REJECT_STAGE][2] == "aesthetic" and "NaN in the weights" in out[cols.REJECT_ERROR][2]
    assert all(math.isfinite(out[AESTHETIC_SCORE][i]) for i in (0, 1, 3))
