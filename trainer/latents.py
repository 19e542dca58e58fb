"""Image latents: AutoencoderKL posteriors sampled and scaled by SD's 0.18215."""
from __future__ import annotations

import torch

from .model import load_component

VAE_SCALE = 0.18215


class LatentEncoder:
    """An AutoencoderKL from a model folder, a hub id, or a pipeline (vae/)."""

    def __init__(self, path, device="cpu", dtype=torch.float32):
        from diffusers import AutoencoderKL

        self.vae = load_component(AutoencoderKL, path, "vae", torch_dtype=dtype)
        self.vae.to(device).eval().requires_grad_(False)
        self.device, self.dtype = device, dtype

    @torch.no_grad()
    def encode(self, pixels, generator: torch.Generator | None = None):
        """Pixels [B, 3, H, W] in [-1, 1] -> scaled latents [B, 4, H/8, W/8], a posterior sample as PixArt takes."""
        posterior = self.vae.encode(pixels.to(self.device, self.dtype)).latent_dist
        return posterior.sample(generator) * VAE_SCALE

    @torch.no_grad()
    def decode(self, latents):
        """Scaled latents -> pixels [B, 3, H, W], roughly in [-1, 1] (not clamped)."""
        return self.vae.decode(latents.to(self.device, self.dtype) / VAE_SCALE).sample
