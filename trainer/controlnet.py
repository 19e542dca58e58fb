"""PixArt-alpha's ControlNet-Transformer (the paper's section 4, `ControlPixArtHalf` in its repository).

Trainable copies of the base's first N blocks (N = 13 of 28 in the paper) run beside it. The control
image's VAE latent goes through the base's own patch embedding; copy 0 takes it through a
zero-initialised linear layer, added to the output of base block 0; copy i's output goes through a
zero-initialised linear layer and is added to the input of base block i + 1. Both zero layers make
the model start as exactly the base; the base stays frozen.

The copies are wired in with forward pre-hooks on the base's blocks, held only while a call runs
(`steering`): the base's own forward (diffusers' PixArtTransformer2DModel, and the pipeline around
it) runs unchanged, and each copy is called with exactly the arguments its base block receives.
The adapter's weights keep the names of diffusers' research PixArtControlNetAdapterModel
(controlnet_blocks.i.{before_proj, transformer_block, after_proj}); it saves and loads as a
diffusers model folder (config.json, diffusion_pytorch_model.safetensors).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.modeling_utils import ModelMixin

from pixcap.schemas import JobError

from .buckets import fit_bucket, to_pixels
from .latents import VAE_SCALE

CONTROLNET_DIR = "controlnet"  # RUN_DIR/controlnet: the EMA adapter, which sampling uses
CONTROLNET_RAW_DIR = "controlnet_raw"
# The BasicTransformerBlock settings of a PixArtTransformer2DModel config that a copy must share.
BLOCK_KEYS = ("num_attention_heads", "attention_head_dim", "dropout", "cross_attention_dim", "activation_fn",
              "num_embeds_ada_norm", "attention_bias", "upcast_attention", "norm_type", "norm_elementwise_affine",
              "norm_eps", "attention_type")


class ControlNetBlock(nn.Module):
    """One trainable copy of a base block, with its zero-initialised projections."""

    def __init__(self, index: int, block: BasicTransformerBlock, hidden: int):
        super().__init__()
        self.index = index
        if index == 0:
            self.before_proj = zero_linear(hidden)
        self.transformer_block = block
        self.after_proj = zero_linear(hidden)

    def forward(self, control, hidden_states, *args, **kwargs):
        """(control state for the next copy, residual for the next base block)."""
        if self.index == 0:
            control = hidden_states + self.before_proj(control)
        control = self.transformer_block(control, *args, **kwargs)
        return control, self.after_proj(control)


def zero_linear(width: int) -> nn.Linear:
    linear = nn.Linear(width, width)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


def new_block(config: dict) -> BasicTransformerBlock:
    """An empty BasicTransformerBlock as PixArtTransformer2DModel builds its own."""
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    return BasicTransformerBlock(
        hidden, config["num_attention_heads"], config["attention_head_dim"], dropout=config["dropout"],
        cross_attention_dim=config["cross_attention_dim"], activation_fn=config["activation_fn"],
        num_embeds_ada_norm=config["num_embeds_ada_norm"], attention_bias=config["attention_bias"],
        upcast_attention=config["upcast_attention"], norm_type=config["norm_type"],
        norm_elementwise_affine=config["norm_elementwise_affine"], norm_eps=config["norm_eps"],
        attention_type=config["attention_type"],
    )


class PixArtControlNet(ModelMixin, ConfigMixin):
    """The trainable half: copies of the first num_layers blocks of a PixArt transformer."""

    @register_to_config
    def __init__(self, num_layers: int = 13, num_attention_heads: int = 16, attention_head_dim: int = 72,
                 dropout: float = 0.0, cross_attention_dim: int = 1152, activation_fn: str = "gelu-approximate",
                 num_embeds_ada_norm: int = 1000, attention_bias: bool = True, upcast_attention: bool = False,
                 norm_type: str = "ada_norm_single", norm_elementwise_affine: bool = False, norm_eps: float = 1e-6,
                 attention_type: str = "default"):
        super().__init__()
        config = dict(self.config)
        hidden = num_attention_heads * attention_head_dim
        self.controlnet_blocks = nn.ModuleList(
            [ControlNetBlock(i, new_block(config), hidden) for i in range(num_layers)])

    @classmethod
    def from_transformer(cls, transformer, num_layers: int) -> "PixArtControlNet":
        """Copies of transformer's first num_layers blocks, their projections at zero."""
        if not 0 < num_layers < len(transformer.transformer_blocks):
            raise ValueError(f"a ControlNet copies 1 to {len(transformer.transformer_blocks) - 1} blocks of this "
                             f"transformer, not {num_layers}")
        settings = {key: transformer.config[key] for key in BLOCK_KEYS}
        settings["norm_type"] = "ada_norm_single"  # PixArtTransformer2DModel builds its blocks with it
        controlnet = cls(num_layers=num_layers, **settings)
        for block, source in zip(controlnet.controlnet_blocks, transformer.transformer_blocks):
            block.transformer_block.load_state_dict(source.state_dict())
        return controlnet.placed_like(transformer)

    def placed_like(self, module) -> "PixArtControlNet":
        """On the device and in the dtype of `module` (only moved where it differs: diffusers warns on a cast)."""
        if (self.device, self.dtype) != (module.device, module.dtype):
            return self.to(device=module.device, dtype=module.dtype)
        return self

    @contextlib.contextmanager
    def steering(self, transformer, control_latents: torch.Tensor):
        """Within this block, `transformer` runs with this ControlNet fed by control_latents [B, 4, h, w].

        A batch that is a whole multiple of B (the pipeline's classifier-free guidance doubles it) takes
        the controls repeated, in the order the pipeline stacks its halves.
        """
        state = {"control": transformer.pos_embed(control_latents.to(transformer.dtype))}

        def hook(index):
            def before_block(module, args, kwargs):
                hidden = args[0] if args else kwargs["hidden_states"]
                rest = args[1:] if args else ()
                kwargs = {k: v for k, v in kwargs.items() if k != "hidden_states"}
                control = state["control"]
                if control.shape[0] != hidden.shape[0]:
                    control = control.repeat(hidden.shape[0] // control.shape[0], 1, 1)
                control, residual = self.controlnet_blocks[index](control, hidden, *rest, **kwargs)
                state["control"] = control
                return (hidden + residual, *rest), kwargs
            return before_block

        blocks = transformer.transformer_blocks
        handles = [blocks[i + 1].register_forward_pre_hook(hook(i), with_kwargs=True)
                   for i in range(len(self.controlnet_blocks))]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


class ControlledTransformer(nn.Module):
    """The model the trainer steps: the frozen base transformer and its trainable ControlNet.

    Called like the transformer; `control` (set by `conditioned`) feeds the ControlNet. Its config is
    the base's, so model_forward and DDP treat it as the transformer.
    """

    def __init__(self, transformer, controlnet: PixArtControlNet):
        super().__init__()
        self.transformer = transformer.requires_grad_(False)
        self.controlnet = controlnet
        self.control = None

    @property
    def config(self):
        return self.transformer.config

    def forward(self, *args, **kwargs):
        if self.control is None:
            return self.transformer(*args, **kwargs)
        with self.controlnet.steering(self.transformer, self.control):
            return self.transformer(*args, **kwargs)


def add_controlnet(transformer, blocks: int) -> ControlledTransformer:
    """The transformer, frozen, with a fresh ControlNet of `blocks` copied blocks (nothing random in it)."""
    return ControlledTransformer(transformer, PixArtControlNet.from_transformer(transformer, blocks))


@contextlib.contextmanager
def conditioned(model, control_latents):
    """Feed control_latents to the ControlNet of `model` (a ControlledTransformer) for the calls inside."""
    if control_latents is None:
        yield
        return
    model.control = control_latents
    try:
        yield
    finally:
        model.control = None


def load_controlnet(path, dtype=None) -> PixArtControlNet:
    return PixArtControlNet.from_pretrained(str(path), torch_dtype=dtype)


@torch.no_grad()
def control_latents(pipe, controls, count: int, height: int | None = None, width: int | None = None) -> torch.Tensor:
    """The scaled VAE latents [count, 4, h, w] of the control images a pipeline samples `count` images with.

    Each image is resized to cover (height, width) (default: the transformer's size) and centre-cropped, as the
    trainer fits a sample's control map with its image; the posterior mean is taken (training draws from it).
    """
    if controls is None or isinstance(controls, (str, Path, Image.Image)):
        controls = [] if controls is None else [controls]
    controls = list(controls) * count if len(controls) == 1 else list(controls)
    if len(controls) != count:
        raise JobError(f"control images: give one, or one per prompt ({count}), got {len(controls)}")
    side = pipe.transformer.config.sample_size * pipe.vae_scale_factor
    size = (height or side, width or side)
    pixels = []
    for control in controls:
        try:
            image = control if isinstance(control, Image.Image) else Image.open(control)
            pixels.append(to_pixels(fit_bucket(image.convert("RGB"), size)))
        except OSError as e:
            raise JobError(f"control image {control}: {e}") from None
    batch = torch.from_numpy(np.stack(pixels)).to(pipe.device, pipe.vae.dtype)
    return pipe.vae.encode(batch).latent_dist.mean * VAE_SCALE
