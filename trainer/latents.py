"""Image latents: the AutoencoderKL posterior, sampled and scaled by SD's 0.18215.

A posterior is kept as its parameters, [B, 8, h, w]: the mean, then the (clamped) log-variance, as
diffusers' DiagonalGaussianDistribution holds them. `pixcap encode` stores them, so every read of a
precomputed sample draws a fresh latent, as PixArt's InternalData does from its stored mean and std:
that sampling is augmentation, and freezing one draw would lose it. Raw and precomputed samples go
through the same sample_posterior with the trainer's generator, so both resume exactly.
"""
from __future__ import annotations

import torch

from .components import load_component

VAE_SCALE = 0.18215
LATENT_CHANNELS = 4
POSTERIOR_CHANNELS = 2 * LATENT_CHANNELS  # mean, log-variance


def sample_posterior(parameters: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Posterior parameters [B, 8, h, w] -> scaled latents [B, 4, h, w]: (mean + std * noise) * 0.18215."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    return DiagonalGaussianDistribution(parameters).sample(generator) * VAE_SCALE


class LatentEncoder:
    """An AutoencoderKL from a model folder, a hub id, or a pipeline (vae/)."""

    def __init__(self, path, device="cpu", dtype=torch.float32):
        from diffusers import AutoencoderKL

        self.vae = load_component(AutoencoderKL, path, "vae", torch_dtype=dtype)
        self.vae.to(device).eval().requires_grad_(False)
        self.device, self.dtype = device, dtype

    @torch.no_grad()
    def posterior(self, pixels) -> torch.Tensor:
        """Pixels [B, 3, H, W] in [-1, 1] -> posterior parameters [B, 8, H/8, W/8] (mean, log-variance), unscaled."""
        dist = self.vae.encode(pixels.to(self.device, self.dtype)).latent_dist
        return torch.cat([dist.mean, dist.logvar], dim=1)

    @torch.no_grad()
    def encode(self, pixels, generator: torch.Generator | None = None):
        """Pixels [B, 3, H, W] in [-1, 1] -> scaled latents [B, 4, H/8, W/8], a posterior sample as PixArt takes."""
        return sample_posterior(self.posterior(pixels), generator)

    @torch.no_grad()
    def decode(self, latents):
        """Scaled latents -> pixels [B, 3, H, W], roughly in [-1, 1] (not clamped)."""
        return self.vae.decode(latents.to(self.device, self.dtype) / VAE_SCALE).sample
