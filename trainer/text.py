"""Caption embeddings: T5 encoder hidden states over 120 tokens with their attention mask, as PixArt uses."""
from __future__ import annotations

import torch

from .captions import check_cleaning_available, prepare_captions
from .components import load_component


class TextEncoder:
    """A T5 tokenizer + T5EncoderModel from a model folder, a hub id, or a PixArt pipeline (text_encoder/, tokenizer/).

    Captions are cleaned first (clean_captions, see captions.py), as PixArt and its diffusers pipeline do.
    """

    def __init__(self, path: str, device="cpu", dtype=torch.float32, max_length: int = 120,
                 clean_captions: bool = True):
        from transformers import AutoTokenizer, T5EncoderModel

        if clean_captions:
            check_cleaning_available()  # before loading T5, which can take minutes
        self.tokenizer = load_component(AutoTokenizer, path, "tokenizer")
        self.model = load_component(T5EncoderModel, path, "text_encoder", torch_dtype=dtype, weights_only=True)
        self.model.to(device).eval().requires_grad_(False)
        self.device, self.max_length, self.clean_captions = device, max_length, clean_captions
        self.hidden_size = self.model.config.d_model

    @torch.no_grad()
    def encode(self, captions: list[str]):
        """Captions -> (emb [B, 120, D] float32, mask [B, 120] long), padded and truncated to max_length."""
        texts = prepare_captions(captions, self.clean_captions)
        tokens = self.tokenizer(texts, max_length=self.max_length, padding="max_length",
                                truncation=True, add_special_tokens=True, return_tensors="pt")
        ids, mask = tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)
        emb = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return emb.float(), mask.long()

    def null(self):
        """The empty caption's embedding and mask [1, 120, D], [1, 120]: what a dropped caption becomes."""
        return self.encode([""])
