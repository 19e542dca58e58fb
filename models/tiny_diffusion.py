"""Tiny, seeded, randomly initialised diffusion models in the real formats: T5 encoder, VAE, DiT."""
from __future__ import annotations

import string
from pathlib import Path

import torch

from pixcap.schemas.models import TRANSFORMER_SIZES


def _tiny_t5_tokenizer():
    """A T5 (Unigram) tokenizer over a small hand-made vocabulary: a few words plus every character."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + w, -1.0) for w in "a photo of the cat dog red blue green tree sky house".split()]
    for c in string.ascii_letters + string.digits + ".,!?'-":
        vocab += [("▁" + c, -4.0), (c, -5.0)]
    # Same special ids as T5 (pad 0, eos 1, unk 2); no sentinels, a text encoder never needs them.
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_tiny_t5(path, seed: int = 0) -> Path:
    """Save a tiny T5EncoderModel (v1.1 style, gated-gelu) and its tokenizer together in `path`."""
    from transformers import T5Config, T5EncoderModel

    path = Path(path)
    tokenizer = _tiny_t5_tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", dropout_rate=0.0,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    T5EncoderModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_vae(path, seed: int = 0) -> Path:
    """Save a tiny AutoencoderKL that downsamples 8x like SD's (4 levels), 4 latent channels."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4,
        sample_size=64, scaling_factor=0.18215,
    )
    vae.save_pretrained(path)
    return Path(path)


def build_tiny_dit(path, seed: int = 0) -> Path:
    """Save a tiny class-conditional DiTTransformer2DModel (learned sigma, 10 classes, 64px images)."""
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(seed)
    # norm_eps 1e-6 as the original DiT (diffusers' default 1e-5 only reaches its MLP norm).
    dit = DiTTransformer2DModel(
        **TRANSFORMER_SIZES["tiny"], in_channels=4, out_channels=8, sample_size=8, patch_size=2,
        num_embeds_ada_norm=10, norm_eps=1e-6,
    )
    # A real checkpoint has one timestep/class embedder that diffusers copies into every block; do the same.
    shared = dit.transformer_blocks[0].norm1.emb.state_dict()
    for block in dit.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(shared)
    dit.save_pretrained(path)
    return Path(path)
