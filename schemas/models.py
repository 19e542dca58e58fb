"""Model names a job may give that are not hub ids or paths: the tiny offline models.

`tiny:*` names are built on first use, seeded and randomly initialised, in the real formats
(save_pretrained, open_clip config + checkpoint), under the job's models_cache.
"""

DEFAULT_MODELS_CACHE = "~/.cache/pixcap/models"
TINY_PREFIX = "tiny:"

TINY_LLAVA = "tiny:llava"
TINY_CLIP = "tiny:clip"
TINY_T5 = "tiny:t5"
TINY_VAE = "tiny:vae"
TINY_DIT = "tiny:dit"
TINY_AESTHETIC = "tiny:aesthetic"  # LAION's aesthetic predictor's MLP on tiny:clip's 32-dim embedding
TINY_MODELS = (TINY_LLAVA, TINY_CLIP, TINY_T5, TINY_VAE, TINY_DIT, TINY_AESTHETIC)

# Sizes of the PixArt/DiT trunk, in one place; everything else (patch 2, adaLN-single,
# cross-attention, 8 out channels) is shared. The tiny one has 24 channels so the 1024 size
# embeddings (3 x 8) fit.
TRANSFORMER_SIZES = {
    "tiny": {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 12},
    "XL-2": {"num_layers": 28, "num_attention_heads": 16, "attention_head_dim": 72},  # hidden 1152
}
