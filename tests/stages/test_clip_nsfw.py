"""The clip_nsfw stage: LAION's CLIP-based NSFW head in its PyTorch port's format, its probability on the
normalised CLIP embedding equal to the head written out in numpy, rows without an embedding unscored."""
import math

import numpy as np
import torch

from pixcap.schemas import batch as cols
from pixcap.schemas.records import NSFW_CLIP_SCORE
from pixcap.schemas.stages import BY_NAME, ClipConfig, ClipNsfwConfig
from pixcap.stages.clip import ClipStage
from pixcap.stages.clip_nsfw import ClipNsfwStage

from .test_aesthetic import embedding_batch

# LAION's clip_ViT-L-14_openai_binary_nsfw_head.pth (src/models.py, NSFWModel_L14): its state dict's keys.
LAION_KEYS = {"norm.mean", "norm.variance"} | {f"linear_{i}.{p}" for i in (1, 2, 3, 4) for p in ("weight", "bias")}


def numpy_head(state: dict, vector: np.ndarray) -> float:
    """The head from its weights alone, in numpy: unit vector, Keras' normalisation, three ReLU layers, a sigmoid."""
    w = {k: v.numpy().astype(np.float64) for k, v in state.items()}
    x = vector.astype(np.float64)
    x = x / np.linalg.norm(x)
    x = (x - w["norm.mean"]) / (np.sqrt(w["norm.variance"]) + 1e-10)
    for i in (1, 2, 3):
        x = np.maximum(w[f"linear_{i}.weight"] @ x + w[f"linear_{i}.bias"], 0.0)
    logit = (w["linear_4.weight"] @ x + w["linear_4.bias"])[0]
    return float(1.0 / (1.0 + np.exp(-logit)))


def test_the_tiny_head_is_saved_in_laion_s_pytorch_format(tiny_models):
    state = torch.load(tiny_models["clip_nsfw"], weights_only=True)
    assert set(state) == LAION_KEYS
    assert state["linear_1.weight"].shape == (64, 32)  # the tiny CLIP's embedding width; 768 for ViT-L/14
    assert [state[f"linear_{i}.weight"].shape[0] for i in (1, 2, 3, 4)] == [64, 512, 256, 1]
    assert state["norm.mean"].shape == state["norm.variance"].shape == (32,)


def test_the_probability_equals_the_head_computed_in_numpy(tiny_models):
    state = torch.load(tiny_models["clip_nsfw"], weights_only=True)
    rng = np.random.default_rng(0)
    vectors = [rng.normal(size=32) * scale for scale in (1.0, 0.1, 7.0, 1.0)]  # any length: it is normalised
    out = ClipNsfwStage(ClipNsfwConfig(str(tiny_models["clip_nsfw"]), batch_size=3))(embedding_batch(vectors))
    expected = [numpy_head(state, v.astype(np.float16).astype(np.float32)) for v in vectors]
    np.testing.assert_allclose(out[NSFW_CLIP_SCORE], expected, rtol=1e-4, atol=1e-6)
    assert out[NSFW_CLIP_SCORE].dtype == np.float32 and ((out[NSFW_CLIP_SCORE] > 0) & (out[NSFW_CLIP_SCORE] < 1)).all()
    assert len(set(np.round(out[NSFW_CLIP_SCORE], 6))) > 1  # the tiny head tells images apart
    assert out[cols.CLIP_EMBEDDING] == embedding_batch(vectors)[cols.CLIP_EMBEDDING]  # read, not consumed


def test_on_the_clip_stage_s_embeddings_and_rows_without_one(tiny_models, model_images, stage_batch):
    clip = ClipStage(ClipConfig(model=str(tiny_models["clip_config"]), pretrained=str(tiny_models["clip_checkpoint"])))
    scored = clip(stage_batch(model_images(3), caption=["a dog", "a cat", "a tree"], nouns=[[], [], []]))
    state = torch.load(tiny_models["clip_nsfw"], weights_only=True)
    out = ClipNsfwStage(ClipNsfwConfig(str(tiny_models["clip_nsfw"])))(scored)
    expected = [numpy_head(state, np.frombuffer(e, dtype=np.float16).astype(np.float32))
                for e in scored[cols.CLIP_EMBEDDING]]
    np.testing.assert_allclose(out[NSFW_CLIP_SCORE], expected, rtol=1e-4, atol=1e-6)
    rng = np.random.default_rng(1)
    batch = embedding_batch([rng.normal(size=32), None], reasons=["", "decode_error"])
    scores = ClipNsfwStage(ClipNsfwConfig(str(tiny_models["clip_nsfw"])))(batch)[NSFW_CLIP_SCORE]
    assert math.isfinite(scores[0]) and math.isnan(scores[1])  # NaN is written as null


def test_the_registry_entry_is_optional_and_adds_a_score_column():
    spec = BY_NAME["clip_nsfw"]
    assert spec.optional and spec.model_keys[0].key == "model"
    field, = spec.fields(ClipNsfwConfig("x"), None)
    assert field.name == NSFW_CLIP_SCORE
