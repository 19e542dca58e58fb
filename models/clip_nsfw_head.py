"""LAION's CLIP-based NSFW detector (LAION-AI/CLIP-based-NSFW-Detector): a small MLP on the
L2-normalised CLIP ViT-L/14 image embedding, giving the probability that an image is NSFW.

LAION trained it with AutoKeras and later ported the heads to PyTorch in the same repository:
`models/clip_ViT-L-14_openai_binary_nsfw_head.pth` is a state dict of this module (their
src/models.py, NSFWModel_L14): keys `norm.mean`, `norm.variance` (Keras' Normalization layer),
`linear_1` ... `linear_4`; ReLU between the linear layers, a sigmoid at the end. pixcap loads that
file (or the same tensors as .safetensors); the original Keras zip needs TensorFlow and AutoKeras,
which pixcap does not depend on: convert it with LAION's convert_heads_to_pytorch.py. Only the input
width varies here: 768 for ViT-L/14, the tiny CLIP's 32 for the tiny head.
"""
from __future__ import annotations

import torch
from torch import nn

HIDDEN = (64, 512, 256)  # NSFWModel_L14's widths, part of the published format
FIRST_WEIGHT = "linear_1.weight"  # (64, input width): tells a state dict's input width
EPSILON = 1e-10  # added to the standard deviation, as LAION's port does


class Normalization(nn.Module):
    """Keras' Normalization layer: the training embeddings' per-dimension mean and variance."""

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("variance", torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / (self.variance.sqrt() + EPSILON)


class ClipNsfwHead(nn.Module):
    def __init__(self, input_size: int = 768):
        super().__init__()
        self.input_size = input_size
        self.norm = Normalization(input_size)
        self.linear_1 = nn.Linear(input_size, HIDDEN[0])
        self.linear_2 = nn.Linear(HIDDEN[0], HIDDEN[1])
        self.linear_3 = nn.Linear(HIDDEN[1], HIDDEN[2])
        self.linear_4 = nn.Linear(HIDDEN[2], 1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(n, input_size) unit embeddings -> (n,) probabilities of NSFW."""
        x = self.norm(embeddings)
        x = torch.relu(self.linear_1(x))
        x = torch.relu(self.linear_2(x))
        x = torch.relu(self.linear_3(x))
        return torch.sigmoid(self.linear_4(x)).squeeze(-1)


def load_clip_nsfw_head(path: str) -> ClipNsfwHead:
    """The head from a state dict: a .safetensors file, or a torch .pth/.pt loaded with weights_only=True
    (a pickle that would run code is refused). Keys and shapes must match LAION's port."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or FIRST_WEIGHT not in state:
        raise ValueError(f"{path}: not a state dict of LAION's CLIP-based NSFW head (no {FIRST_WEIGHT});"
                         " a Keras zip is converted with LAION's convert_heads_to_pytorch.py")
    model = ClipNsfwHead(int(state[FIRST_WEIGHT].shape[1]))
    model.load_state_dict(state, strict=True)
    return model.eval()
