"""open_clip for the eval: image and prompt embeddings (CLIP score, CLIP-FID) and GenEval's colour
classifier on object crops. Loaded once; the model is the eval job's clip.model / clip.pretrained."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch

from pixcap.schemas.evaluation import CLASSIFIER_COLOURS
from pixcap.stages.clip import resolve_model_name, resolve_pretrained

from .rules import classify, colour_templates, zero_shot_weights


class ClipScorer:
    def __init__(self, model: str, pretrained: str, device: str = "cpu"):
        import open_clip

        name = resolve_model_name(model)
        self.device = device
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            name, pretrained=resolve_pretrained(pretrained), device=device, weights_only=True)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)
        self._colour_weights: Dict[str, np.ndarray] = {}

    @torch.no_grad()
    def image_embeddings(self, images: Sequence) -> np.ndarray:
        """Unnormalised image embeddings [n, d] in float32 (float64 later, where FID needs it)."""
        if not images:
            return np.zeros((0, self.model.visual.output_dim), np.float32)
        pixels = torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device)
        return self.model.encode_image(pixels).float().cpu().numpy()

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).float().cpu().numpy()

    def colour_weights(self, name: str) -> np.ndarray:
        """GenEval's colour classifier for objects called `name` (its three templates, averaged)."""
        if name not in self._colour_weights:
            texts = [t.format(c=c) for c in CLASSIFIER_COLOURS for t in colour_templates(name)]
            emb = self.text_embeddings(texts).reshape(len(CLASSIFIER_COLOURS), len(colour_templates(name)), -1)
            self._colour_weights[name] = zero_shot_weights(emb)
        return self._colour_weights[name]

    def crop_colours(self, image, name: str, boxes: List[list]) -> List[str]:
        """The colour CLIP names for each box's crop of the image (GenEval crops the box; with no
        segmentation mask here, the background inside the box stays)."""
        if not boxes:
            return []
        crops = [image.crop(inside(box, image.width, image.height)) for box in boxes]
        return classify(self.image_embeddings(crops), self.colour_weights(name), CLASSIFIER_COLOURS)


def inside(box, width: int, height: int) -> tuple:
    """A box as whole pixels within the image, at least one pixel wide and high (a detector's box may
    reach past the border, or have no area)."""
    x0 = min(max(int(np.floor(box[0])), 0), width - 1)
    y0 = min(max(int(np.floor(box[1])), 0), height - 1)
    x1 = min(max(int(np.ceil(box[2])), x0 + 1), width)
    y1 = min(max(int(np.ceil(box[3])), y0 + 1), height)
    return x0, y0, x1, y1
