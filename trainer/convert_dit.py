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
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .model import init_pixart_weights, load_component, transformer_config


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

    tt = torch.tensor([t])
    null_class = torch.tensor([dc.num_embeds_ada_norm])
    if norm0.emb.class_embedder.embedding_table.num_embeddings <= dc.num_embeds_ada_norm:
        raise ValueError(f"{dit_path}: DiT has no null class embedding to stand in for the dropped class")
    global_mod, t_emb = pixart.adaln_single(tt, None, batch_size=1, hidden_dtype=torch.float32)
    hidden = pixart.inner_dim
    for pix_block, dit_block in zip(pixart.transformer_blocks, dit.transformer_blocks):
        cond = dit_block.norm1.emb(tt, null_class, hidden_dtype=torch.float32)
        dit_mod = dit_block.norm1.linear(F.silu(cond))  # (1, 6D): shift, scale, gate for attention then MLP
        pix_block.scale_shift_table.copy_((dit_mod - global_mod).view(6, hidden))
    cond = norm0.emb(tt, null_class, hidden_dtype=torch.float32)  # DiT's final layer uses block 0's embedder
    final = dit.proj_out_1(F.silu(cond)).view(2, hidden)  # shift, scale
    pixart.scale_shift_table.copy_(final - t_emb)

    out_path = Path(out_path)
    pixart.save_pretrained(out_path)
    return out_path


def convert_dit_command(args) -> int:
    """`pixcap convert-dit DIT_PATH OUT_DIR [--caption-channels N]`."""
    out = convert_dit(args.dit_path, args.out_dir, getattr(args, "caption_channels", 4096), getattr(args, "t", 500))
    print(f"wrote PixArt transformer to {out}")
    return 0
