"""FID's Inception features: torchmetrics' NoTrainInceptionV3 (torch-fidelity's port of the
TensorFlow FID graph, the network FrechetInceptionDistance uses), with its weights from a path.

torch-fidelity unpickles the weights file with weights_only=False; it is first opened here with
weights_only=True, so a file holding anything but tensors is refused before that.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from pixcap.schemas import JobError

FEATURES = "2048"  # the pool3 features FID is defined on


class InceptionFeatures:
    def __init__(self, weights: str, device: str = "cpu"):
        from torchmetrics.image.fid import NoTrainInceptionV3

        try:
            torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as err:  # a pickle with code, or not a torch file: one line, before any unpickling
            raise JobError(f"fid.inception: {weights} is not a plain state dict of tensors "
                           f"({type(err).__name__})") from None
        self.device = device
        self.model = NoTrainInceptionV3(name="inception-v3-compat", features_list=[FEATURES],
                                        feature_extractor_weights_path=weights).to(device)

    @torch.no_grad()
    def features(self, images: Sequence) -> np.ndarray:
        """[n, 2048] float32 pool features of uint8 RGB images (resized to 299 inside, as torchmetrics does)."""
        if not images:
            return np.zeros((0, 2048), np.float32)
        batch = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
                             for im in images])
        if len({tuple(t.shape) for t in batch}) > 1:
            raise ValueError("images of one batch must share a size")
        return self.model(batch.to(self.device)).float().cpu().numpy()
