"""The PixArt-alpha transformer: diffusers' PixArtTransformer2DModel, its sizes, initialisation and forward call."""
from __future__ import annotations

import logging

import torch
from torch import nn

from pixcap.schemas.models import TRANSFORMER_SIZES

from .components import unwrap
from .weights import starting_weights

VAE_DOWNSAMPLE = 8
# Embedders only the 1024 model has; a 256/512 checkpoint loaded into it starts them fresh.
SIZE_EMBEDDERS = ("adaln_single.emb.resolution_embedder.", "adaln_single.emb.aspect_ratio_embedder.")


def transformer_config(size: str | dict, resolution: int, caption_channels: int) -> dict:
    """The PixArtTransformer2DModel config for a size (a name or a trunk dict) at a resolution (pixels)."""
    if isinstance(size, str) and size not in TRANSFORMER_SIZES:
        raise ValueError(f"unknown transformer size {size!r}; known: {sorted(TRANSFORMER_SIZES)}")
    trunk = TRANSFORMER_SIZES[size] if isinstance(size, str) else size
    hidden = trunk["num_attention_heads"] * trunk["attention_head_dim"]
    return dict(
        **trunk,
        in_channels=4,
        out_channels=8,  # epsilon and the variance interpolation v (learned sigma)
        patch_size=2,
        sample_size=resolution // VAE_DOWNSAMPLE,
        cross_attention_dim=hidden,  # captions are projected to the hidden size first
        caption_channels=caption_channels,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        activation_fn="gelu-approximate",
        attention_bias=True,
        num_embeds_ada_norm=1000,
        # PixArt conditions on image size and aspect ratio only at 1024 (PixArtMS).
        use_additional_conditions=resolution == 1024,
    )


@torch.no_grad()
def xavier_fused_(*linears: nn.Linear) -> None:
    """Xavier-initialise linears as the one layer they are fused into in PixArt, then split it among them.

    PixArt's self-attention q, k, v are one Linear(D, 3D) and its cross-attention k, v one Linear(D, 2D);
    Xavier's bound shrinks with fan_out, so three separately initialised D x D layers would start
    sqrt(2) wider (sqrt(1.5) for k, v) than PixArt's. diffusers keeps them apart; only the init is fused.
    """
    sizes = [linear.weight.shape[0] for linear in linears]
    weight = linears[0].weight
    fused = torch.empty(sum(sizes), weight.shape[1], dtype=weight.dtype, device=weight.device)
    nn.init.xavier_uniform_(fused)
    for linear, part in zip(linears, fused.split(sizes)):
        linear.weight.copy_(part)


def init_pixart_weights(model) -> None:
    """PixArt's initialisation: xavier linears (attention projections as fused), small embedder MLPs,
    zero cross-attention output and final layer."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    for block in model.transformer_blocks:
        xavier_fused_(block.attn1.to_q, block.attn1.to_k, block.attn1.to_v)  # PixArt's attn.qkv
        xavier_fused_(block.attn2.to_k, block.attn2.to_v)  # PixArt's cross_attn.kv_linear
    w = model.pos_embed.proj.weight  # the patch embedding is a linear over patches
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    emb = model.adaln_single.emb
    embedders = [emb.timestep_embedder]
    if model.use_additional_conditions:
        embedders += [emb.resolution_embedder, emb.aspect_ratio_embedder]
    for embedder in embedders:
        nn.init.normal_(embedder.linear_1.weight, std=0.02)
        nn.init.normal_(embedder.linear_2.weight, std=0.02)
    nn.init.normal_(model.adaln_single.linear.weight, std=0.02)
    nn.init.normal_(model.caption_projection.linear_1.weight, std=0.02)
    nn.init.normal_(model.caption_projection.linear_2.weight, std=0.02)
    for block in model.transformer_blocks:  # each block starts as its unconditional self
        nn.init.zeros_(block.attn2.to_out[0].weight)
        nn.init.zeros_(block.attn2.to_out[0].bias)
    nn.init.zeros_(model.proj_out.weight)
    nn.init.zeros_(model.proj_out.bias)


def build_transformer(size: str, resolution: int, caption_channels: int, load_from: str | None = None,
                      load_ema: bool = False, seed: int = 0):
    """A PixArt transformer for `resolution`, PixArt-initialised from `seed` or loaded from load_from
    (its raw weights unless load_ema; see weights.py)."""
    from diffusers import PixArtTransformer2DModel

    config = transformer_config(size, resolution, caption_channels)
    torch.manual_seed(seed)
    model = PixArtTransformer2DModel(**config)
    init_pixart_weights(model)  # loaded weights overwrite all but the size embedders they may lack
    if load_from is None:
        return model
    state, source_config, which = starting_weights(load_from, load_ema)
    for key in ("num_layers", "num_attention_heads", "attention_head_dim", "caption_channels", "out_channels"):
        if source_config is not None and source_config[key] != config[key]:
            raise ValueError(f"{load_from}: {key} is {source_config[key]}, size {size!r} wants {config[key]}")
    # Load weights rather than the model, so a 256/512 checkpoint serves a larger resolution (PixArt's stages):
    # positions are fixed sin-cos and are recomputed for this sample size.
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes that differ: another size or caption width
        raise ValueError(f"{load_from} does not fit a PixArt {size} transformer: {str(e).splitlines()[-1].strip()}") from e
    bad = [k for k in missing if not k.startswith(SIZE_EMBEDDERS)] + [
        k for k in unexpected if not k.startswith(SIZE_EMBEDDERS)]
    if bad:
        raise ValueError(f"{load_from} does not fit a PixArt {size} transformer: {bad[:5]}")
    logging.getLogger(__name__).info(f"load_from: {which}")
    return model


def model_forward(model, x_t, t, text_emb, text_mask, resolution=None, aspect_ratio=None):
    """Run the transformer (bare or wrapped) on latents x_t at timesteps t with captions -> [B, 8, h, w] (eps, v)."""
    batch, _, h, w = x_t.shape
    t = torch.as_tensor(t, device=x_t.device).expand(batch)
    cond = {"resolution": None, "aspect_ratio": None}
    if unwrap(model).config.use_additional_conditions:
        # Default micro-conditions are the image this latent decodes to, as the diffusers pipeline passes them.
        if resolution is None:
            resolution = torch.tensor([[h * VAE_DOWNSAMPLE, w * VAE_DOWNSAMPLE]]).expand(batch, 2)
        if aspect_ratio is None:
            aspect_ratio = resolution[:, :1] / resolution[:, 1:]
        cond = {"resolution": resolution.to(x_t.device, x_t.dtype),
                "aspect_ratio": aspect_ratio.to(x_t.device, x_t.dtype)}
    return model(x_t, encoder_hidden_states=text_emb, encoder_attention_mask=text_mask, timestep=t,
                 added_cond_kwargs=cond, return_dict=False)[0]
