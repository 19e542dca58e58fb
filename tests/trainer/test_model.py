"""The PixArt transformer build/init/forward, the T5 text encoder and the VAE latent encoder."""
import math

import pytest
import torch
from diffusers import AutoencoderKL, PixArtTransformer2DModel

from pixcap.trainer.latents import VAE_SCALE, LatentEncoder, sample_posterior
from pixcap.trainer.model import build_transformer, init_pixart_weights, model_forward, transformer_config
from pixcap.trainer.text import TextEncoder


def captions(batch=2, channels=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, 120, dtype=torch.long)
    mask[:, :10] = 1
    return torch.randn(batch, 120, channels, generator=g), mask


def wake_cross_attention(model):
    """PixArt starts cross-attention outputs at zero; give them weights so captions matter."""
    g = torch.Generator().manual_seed(1)
    for p in model.parameters():
        if p.abs().max() == 0:
            p.data = torch.randn(p.shape, generator=g) * 0.1


def test_xl2_is_pixart_alpha_size():
    config = transformer_config("XL-2", 512, 4096)
    with torch.device("meta"):
        model = PixArtTransformer2DModel(**config)
    n = sum(p.numel() for p in model.parameters())
    assert 600e6 < n < 620e6  # PixArt-alpha XL-2: 0.6B
    assert model.inner_dim == 1152 and len(model.transformer_blocks) == 28
    assert config["sample_size"] == 64 and not config["use_additional_conditions"]
    assert transformer_config("XL-2", 1024, 4096)["use_additional_conditions"]


@pytest.mark.parametrize("resolution", [64, 1024])
def test_forward_shape_and_mask(resolution):
    model = build_transformer("tiny", resolution, caption_channels=32).eval()
    assert model.config.out_channels == 8 and model.config.patch_size == 2
    assert model.config.sample_size == resolution // 8
    assert model.config.use_additional_conditions == (resolution == 1024)
    wake_cross_attention(model)
    x = torch.randn(2, 4, 8, 12)  # not square: positions are recomputed for the bucket's shape
    emb, mask = captions()
    with torch.no_grad():
        out = model_forward(model, x, torch.tensor([5, 900]), emb, mask)
        assert out.shape == (2, 8, 8, 12)
        padded = emb.clone()
        padded[:, 10:] += 5.0  # tokens the mask hides
        torch.testing.assert_close(model_forward(model, x, torch.tensor([5, 900]), padded, mask), out)
        emb[:, 0] += 5.0
        assert not torch.allclose(model_forward(model, x, torch.tensor([5, 900]), emb, mask), out)


def test_micro_conditions_used_at_1024():
    model = build_transformer("tiny", 1024, caption_channels=32).eval()
    wake_cross_attention(model)
    x, (emb, mask) = torch.randn(1, 4, 8, 8), captions(1)
    with torch.no_grad():
        default = model_forward(model, x, torch.tensor([10]), emb, mask)
        same = model_forward(model, x, torch.tensor([10]), emb, mask, resolution=torch.tensor([[64.0, 64.0]]),
                             aspect_ratio=torch.tensor([[1.0]]))
        other = model_forward(model, x, torch.tensor([10]), emb, mask, resolution=torch.tensor([[1024.0, 512.0]]))
    torch.testing.assert_close(default, same)
    assert not torch.allclose(default, other)


def test_forward_through_a_wrapper():
    """DDP hides the model's config behind .module; model_forward must still see it (micro-conditions)."""
    class Wrapper(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            return self.module(*args, **kwargs)

    model = build_transformer("tiny", 1024, caption_channels=32).eval()
    x, (emb, mask) = torch.randn(1, 4, 8, 8), captions(1)
    with torch.no_grad():
        torch.testing.assert_close(model_forward(Wrapper(model), x, 10, emb, mask), model_forward(model, x, 10, emb, mask))


def test_pixart_init_and_seed():
    a, b = build_transformer("tiny", 64, 32, seed=0), build_transformer("tiny", 64, 32, seed=0)
    c = build_transformer("tiny", 64, 32, seed=1)
    torch.testing.assert_close(a.state_dict(), b.state_dict())
    assert not torch.equal(a.caption_projection.linear_1.weight, c.caption_projection.linear_1.weight)
    assert a.proj_out.weight.abs().max() == 0 and a.transformer_blocks[0].attn2.to_out[0].weight.abs().max() == 0


def xavier_bound(fan_in, fan_out):
    """torch.nn.init.xavier_uniform_'s bound, from Glorot and Bengio's formula."""
    return math.sqrt(6.0 / (fan_in + fan_out))


def test_attention_starts_as_pixarts_fused_layers():
    """PixArt's q, k, v are one Linear(D, 3D) and its cross-attention k, v one Linear(D, 2D), Xavier-initialised:
    each weight is uniform within the fused layer's bound, not the narrower D x D layer's wider one."""
    trunk = {"num_layers": 2, "num_attention_heads": 4, "attention_head_dim": 32}  # D = 128: enough weights
    model = PixArtTransformer2DModel(**transformer_config(trunk, 256, 32))
    torch.manual_seed(0)
    init_pixart_weights(model)
    d = model.inner_dim
    for block in model.transformer_blocks:
        expected = [(block.attn1.to_q, xavier_bound(d, 3 * d)), (block.attn1.to_k, xavier_bound(d, 3 * d)),
                    (block.attn1.to_v, xavier_bound(d, 3 * d)), (block.attn2.to_q, xavier_bound(d, d)),
                    (block.attn2.to_k, xavier_bound(d, 2 * d)), (block.attn2.to_v, xavier_bound(d, 2 * d))]
        for linear, bound in expected:
            w = linear.weight
            assert w.abs().max() <= bound and w.abs().max() > 0.98 * bound
            assert abs(w.std().item() / (bound / math.sqrt(3)) - 1) < 0.03  # uniform(-a, a): std a / sqrt(3)
            assert linear.bias.abs().max() == 0
        # Fused, not three draws of one shape: q, k, v are different parts of one matrix.
        assert not torch.equal(block.attn1.to_q.weight, block.attn1.to_k.weight)


def test_load_from_checkpoint_into_larger_resolution(tmp_path):
    source = build_transformer("tiny", 256, 32, seed=3)
    wake_cross_attention(source)
    source.save_pretrained(tmp_path / "pipe" / "transformer")  # a pipeline folder
    source.save_pretrained(tmp_path / "bare")  # a transformer folder
    for path in (tmp_path / "pipe", tmp_path / "bare"):
        model = build_transformer("tiny", 1024, 32, load_from=str(path))
        assert model.config.sample_size == 128 and model.config.use_additional_conditions
        torch.testing.assert_close(model.transformer_blocks[1].attn2.to_q.weight,
                                   source.transformer_blocks[1].attn2.to_q.weight)
        torch.testing.assert_close(model.proj_out.weight, source.proj_out.weight)
    with pytest.raises(ValueError, match="caption_channels"):
        build_transformer("tiny", 256, 64, load_from=str(tmp_path / "bare"))


def test_text_encoder(tiny_trainer_models):
    text = TextEncoder(str(tiny_trainer_models["t5"]), clean_captions=False)
    emb, mask = text.encode(["a red cat", "a photo of the dog on a tree in the big blue sky"])
    assert emb.shape == (2, 120, text.hidden_size) and emb.dtype == torch.float32
    assert mask.shape == (2, 120) and mask.dtype == torch.long
    assert 1 < mask[0].sum() < mask[1].sum() and mask[0, : mask[0].sum()].all()  # tokens then </s>, then pad
    null, null_mask = text.null()
    assert null.shape == (1, 120, text.hidden_size) and null_mask.sum() == 1  # just </s>
    torch.testing.assert_close(text.encode(["", "a red cat"])[0][:1], null)
    assert not torch.allclose(null, emb[:1])


def test_latent_encoder(tiny_trainer_models):
    latents = LatentEncoder(str(tiny_trainer_models["vae"]))
    vae = AutoencoderKL.from_pretrained(tiny_trainer_models["vae"])
    pixels = torch.rand(2, 3, 64, 48) * 2 - 1
    z = latents.encode(pixels, generator=torch.Generator().manual_seed(0))
    assert z.shape == (2, 4, 8, 6)
    with torch.no_grad():
        want = vae.encode(pixels).latent_dist.sample(torch.Generator().manual_seed(0)) * VAE_SCALE
        torch.testing.assert_close(z, want, rtol=0, atol=0)
        torch.testing.assert_close(latents.decode(z), vae.decode(z / VAE_SCALE).sample)
    assert latents.decode(z).shape == pixels.shape


def test_stored_posterior_draws_as_pixart_does(tiny_trainer_models):
    """What pixcap encode stores is the posterior: each read draws anew, mean + std * noise (InternalData's
    vae_feat_loader on extract_features' [mean, std]), and from the trainer's generator the draw equals
    sampling the VAE itself, so precomputed and raw training see the same latents."""
    latents = LatentEncoder(str(tiny_trainer_models["vae"]))
    pixels = torch.rand(3, 3, 64, 64) * 2 - 1
    stored = latents.posterior(pixels)
    assert stored.shape == (3, 8, 8, 8) and stored.dtype == torch.float32
    with torch.no_grad():
        dist = AutoencoderKL.from_pretrained(tiny_trainer_models["vae"]).encode(pixels).latent_dist
    mean, std = dist.mean, dist.std  # what PixArt's extract_features saves
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    official = (mean + std * noise) * VAE_SCALE  # vae_feat_loader, then train.py's scale_factor
    torch.testing.assert_close(sample_posterior(stored, torch.Generator().manual_seed(7)), official)
    first, second = sample_posterior(stored, g := torch.Generator().manual_seed(0)), sample_posterior(stored, g)
    assert (first - second).abs().mean() > 0.1 * std.mean() * VAE_SCALE  # a fresh draw each read
    torch.testing.assert_close(sample_posterior(stored, torch.Generator().manual_seed(3)),
                               latents.encode(pixels, torch.Generator().manual_seed(3)), rtol=0, atol=0)
