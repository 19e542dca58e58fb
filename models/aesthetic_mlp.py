"""The MLP of LAION's improved aesthetic predictor (christophschuhmann/improved-aesthetic-predictor):
a score from the L2-normalised CLIP ViT-L/14 image embedding.

Its released weights (`sac+logos+ava1-l14-linearMSE.pth`) are a state dict of this exact
Sequential, keys `layers.0.weight` ... `layers.7.bias`; the layer positions, dropouts included,
are part of that format. The "linear" variant has no activations between the layers: as
released, so the scores match LAION's. Only the input width varies: 768 for ViT-L/14, the tiny
CLIP's 32 for the tiny model.
"""
from __future__ import annotations

import torch
from torch import nn

HIDDEN = (1024, 128, 64, 16)
DROPOUTS = (0.2, 0.2, 0.1)  # after the first three linear layers, as in LAION's training code
FIRST_WEIGHT = "layers.0.weight"  # (1024, input width): tells a state dict's input width


class AestheticMLP(nn.Module):
    def __init__(self, input_size: int = 768):
        super().__init__()
        self.input_size = input_size
        self.layers = nn.Sequential(
            nn.Linear(input_size, HIDDEN[0]), nn.Dropout(DROPOUTS[0]),
            nn.Linear(HIDDEN[0], HIDDEN[1]), nn.Dropout(DROPOUTS[1]),
            nn.Linear(HIDDEN[1], HIDDEN[2]), nn.Dropout(DROPOUTS[2]),
            nn.Linear(HIDDEN[2], HIDDEN[3]),
            nn.Linear(HIDDEN[3], 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(n, input_size) unit embeddings -> (n,) scores."""
        return self.layers(embeddings).squeeze(-1)


def load_aesthetic_mlp(path: str) -> AestheticMLP:
    """The predictor from a state dict: a .safetensors file, or a torch .pth/.pt loaded with
    weights_only=True (a pickle that would run code is refused). Keys and shapes must match."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or FIRST_WEIGHT not in state:
        raise ValueError(f"{path}: not a state dict of LAION's aesthetic predictor (no {FIRST_WEIGHT})")
    model = AestheticMLP(int(state[FIRST_WEIGHT].shape[1]))
    model.load_state_dict(state, strict=True)
    return model.eval()
