"""convert-dit: the converted PixArt transformer predicts what the DiT (null class) does at t = 500,
with DiT computed the way its weights were trained: the original DiT code's timestep embedding."""
import argparse
import math

import pytest
import torch
from diffusers import DiTTransformer2DModel, PixArtTransformer2DModel

from pixcap.trainer.cli import add_convert_dit_args, convert_dit_command
from pixcap.trainer.convert_dit import convert_dit
from pixcap.trainer.model import model_forward

CAPTION_CHANNELS = 32


def original_dit_timestep_embedding(t, dim, max_period=10000):
    """facebookresearch/DiT models.py, TimestepEmbedder.timestep_embedding, verbatim but for names."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def as_trained(dit):
    """The diffusers DiT with the timestep projection the original code trained its weights with."""
    for block in dit.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 0
    return dit


@pytest.fixture(scope="module")
def converted(tiny_trainer_models, tmp_path_factory):
    out = convert_dit(str(tiny_trainer_models["dit"]), tmp_path_factory.mktemp("pixart") / "transformer",
                      caption_channels=CAPTION_CHANNELS)
    dit = as_trained(DiTTransformer2DModel.from_pretrained(tiny_trainer_models["dit"]).eval())
    pixart = PixArtTransformer2DModel.from_pretrained(out).eval()
    return dit, pixart


def test_projections_original_dit_pixart_and_diffusers_dit():
    """Verifies the premise: the original DiT and PixArt project t with shift 0, diffusers' DiT with shift 1."""
    from diffusers.models.embeddings import Timesteps

    t = torch.tensor([0, 1, 250, 500, 999])
    original = original_dit_timestep_embedding(t, 256)
    pixart = PixArtTransformer2DModel(num_layers=1, attention_head_dim=8, num_attention_heads=3, sample_size=8,
                                      caption_channels=8, norm_type="ada_norm_single")
    torch.testing.assert_close(pixart.adaln_single.emb.time_proj(t), original)
    diffusers_dit = Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=1)  # DiT's, in diffusers
    from diffusers.models.embeddings import CombinedTimestepLabelEmbeddings

    assert CombinedTimestepLabelEmbeddings(10, 24).time_proj.downscale_freq_shift == 1
    at_500 = t == 500
    gap = (diffusers_dit(t)[at_500] - original[at_500]).norm() / original[at_500].norm()
    assert 0.55 < gap.item() < 0.65  # about 61%: the published weights never saw this embedding


def predict(dit, pixart, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 8, generator=g)
    captions = torch.randn(2, 120, CAPTION_CHANNELS, generator=g)
    mask = torch.zeros(2, 120, dtype=torch.long)
    mask[0, :7], mask[1, :30] = 1, 1
    steps = torch.full((2,), t)
    null_class = torch.full((2,), dit.config.num_embeds_ada_norm)
    with torch.no_grad():
        want = dit(x, timestep=steps, class_labels=null_class, return_dict=False)[0]
        got = model_forward(pixart, x, steps, captions, mask)
    return want, got


def test_equal_to_dit_as_trained_at_t500(converted):
    want, got = predict(*converted, t=500)
    assert got.shape == want.shape == (2, 8, 8, 8)
    assert want.abs().mean() > 0.1  # a random DiT says something non-trivial
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_timestep_embedding_is_dits_at_every_t(converted):
    """PixArt's adaLN-single embeds t exactly as trained DiT did: its MLP on the original projection."""
    dit, pixart = converted
    t = torch.tensor([0, 37, 500, 999])
    with torch.no_grad():
        _, t_emb = pixart.adaln_single(t, None, batch_size=4, hidden_dtype=torch.float32)
        want = dit.transformer_blocks[0].norm1.emb.timestep_embedder(original_dit_timestep_embedding(t, 256))
    torch.testing.assert_close(t_emb, want)


def test_differs_away_from_t500(converted):
    """The per-block tables only pin t = 500; elsewhere the shared MLP stands in for each block's own."""
    want, got = predict(*converted, t=50)
    assert (got - want).abs().max() > 1e-3


def test_captions_start_without_effect(converted):
    _, pixart = converted
    for block in pixart.transformer_blocks:
        assert block.attn2.to_out[0].weight.abs().max() == 0
    _, a = predict(*converted, t=500, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    with torch.no_grad():
        b = model_forward(pixart, x, torch.full((2,), 500), torch.randn(2, 120, CAPTION_CHANNELS),
                          torch.ones(2, 120, dtype=torch.long))
    torch.testing.assert_close(a, b)


def test_shared_weights_come_from_dit(converted):
    dit, pixart = converted
    torch.testing.assert_close(pixart.pos_embed.proj.weight, dit.pos_embed.proj.weight)
    torch.testing.assert_close(pixart.transformer_blocks[1].ff.net[2].weight, dit.transformer_blocks[1].ff.net[2].weight)
    torch.testing.assert_close(pixart.adaln_single.linear.weight, dit.transformer_blocks[0].norm1.linear.weight)
    torch.testing.assert_close(pixart.proj_out.weight, dit.proj_out_2.weight)
    assert pixart.config.caption_channels == CAPTION_CHANNELS and pixart.config.out_channels == 8


def test_cli(tiny_trainer_models, tmp_path):
    parser = argparse.ArgumentParser()
    add_convert_dit_args(parser)
    args = parser.parse_args([str(tiny_trainer_models["dit"]), str(tmp_path / "out"), "--caption-channels", "16"])
    assert convert_dit_command(args) == 0
    assert PixArtTransformer2DModel.from_pretrained(tmp_path / "out").config.caption_channels == 16
