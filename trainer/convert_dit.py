"""Stage 1 initialisation: map a class-conditional DiT onto the PixArt transformer (`pixcap convert-dit`).

Shared by both: patch embedding, self-attention, MLPs, the output projection and the timestep embedder.
New in PixArt: caption projection and cross-attention, whose output projection starts at zero so a fresh
block computes exactly what the DiT block did.
Dropped: the class embedding. Convention: the converted model reproduces DiT conditioned on its *null class*
(the learned unconditional embedding of classifier-free guidance, row `num_classes` of the table), since a
text-to-image model starts from the unconditional image model.
adaLN-single: DiT's block i modulates with W_i silu(t_emb + y_null) + b_i; PixArt with
table_i + W silu(t_emb) + b shared by all blocks. W, b come from DiT's block 0 and each table_i is set so that
the two modulations are equal at t = 500 (and likewise the final layer's shift/scale, which PixArt takes
as table + t_emb). Away from t = 500 they differ by how block i's modulation moves with t.

Timestep embedding: the original DiT code, which trained the published weights, projects t onto
sinusoids with frequencies exp(-ln(10000) k / 128) (diffusers' downscale_freq_shift=0), as PixArt's
adaLN-single does. diffusers' DiTTransformer2DModel uses shift 1 (k / 127), about 61% away (relative L2)
at t = 500: the weights were never trained on it. So t_emb here is DiT's MLP on PixArt's own shift-0
projection: the converted model sees exactly the timestep embedding DiT was trained with, at every t.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .components import load_component
from .model import init_pixart_weights, transformer_config


@torch.no_grad()
def convert_dit(dit_path: str, out_path: str, caption_channels: int, t: int = 500, seed: int = 0) -> Path:
    """Write a diffusers PixArt transformer folder at `out_path`, initialised from the DiT at `dit_path`."""
    from diffusers import DiTTransformer2DModel, PixArtTransformer2DModel

    dit = load_component(DiTTransformer2DModel, dit_path, "transformer").float().eval()
    dc = dit.config
    if dc.out_channels != 2 * dc.in_channels:
        raise ValueError(f"{dit_path}: needs a learned-sigma DiT (out_channels {dc.out_channels})")
    trunk = {k: dc[k] for k in ("num_layers", "num_attention_heads", "attention_head_dim")}
    config = transformer_config(trunk, dc.sample_size * 8, caption_channels)
    config.update(patch_size=dc.patch_size, activation_fn=dc.activation_fn, attention_bias=dc.attention_bias)
    torch.manual_seed(seed)
    pixart = PixArtTransformer2DModel(**config)
    init_pixart_weights(pixart)  # for the new parts: caption projection, cross-attention (output zeroed)

    # Same module names on both sides for the shared trunk.
    shared = {k: v for k, v in dit.state_dict().items()
              if k.startswith("pos_embed.") or ".attn1." in k or ".ff." in k}
    shared |= {"proj_out." + k: v for k, v in dit.proj_out_2.state_dict().items()}
    norm0 = dit.transformer_blocks[0].norm1
    shared |= {"adaln_single.emb.timestep_embedder." + k: v for k, v in norm0.emb.timestep_embedder.state_dict().items()}
    shared |= {"adaln_single.linear." + k: v for k, v in norm0.linear.state_dict().items()}
    _, unexpected = pixart.load_state_dict(shared, strict=False)
    assert not unexpected, unexpected

    null_class = dc.num_embeds_ada_norm
    if norm0.emb.class_embedder.embedding_table.num_embeddings <= null_class:
        raise ValueError(f"{dit_path}: DiT has no null class embedding to stand in for the dropped class")
    tt = torch.tensor([t])
    global_mod, t_emb = pixart.adaln_single(tt, None, batch_size=1, hidden_dtype=torch.float32)
    t_proj = pixart.adaln_single.emb.time_proj(tt)  # shift 0: the projection DiT was trained with

    def dit_condition(emb):
        """DiT's conditioning as trained: its timestep MLP on the shift-0 projection, plus the null class."""
        return emb.timestep_embedder(t_proj) + emb.class_embedder.embedding_table.weight[null_class]

    hidden = pixart.inner_dim
    for pix_block, dit_block in zip(pixart.transformer_blocks, dit.transformer_blocks):
        dit_mod = dit_block.norm1.linear(F.silu(dit_condition(dit_block.norm1.emb)))  # (1, 6D): attention, MLP
        pix_block.scale_shift_table.copy_((dit_mod - global_mod).view(6, hidden))
    final = dit.proj_out_1(F.silu(dit_condition(norm0.emb))).view(2, hidden)  # shift, scale; block 0's embedder
    pixart.scale_shift_table.copy_(final - t_emb)

    out_path = Path(out_path)
    pixart.save_pretrained(out_path)
    return out_path
