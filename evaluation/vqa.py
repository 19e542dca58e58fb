"""BLIP VQA's P(yes), as T2I-CompBench's BLIP-VQA asks it, with transformers' BlipForQuestionAnswering.

The question "<noun phrase>?" is encoded with the image; the decoder's first answer token after
its start token ([DEC]) is read once, and P(yes) = p(yes) / (p(yes) + p(no)) (rules.p_yes).
transformers' model returns no decoder logits from forward(), so its three parts are run in turn
as its generate() runs them.
"""
from __future__ import annotations

from typing import List, Sequence

import torch

from .rules import p_yes


class VqaScorer:
    def __init__(self, path: str, device: str = "cpu"):
        from transformers import BlipForQuestionAnswering, BlipProcessor

        self.device = device
        self.processor = BlipProcessor.from_pretrained(path)
        self.model = BlipForQuestionAnswering.from_pretrained(path).to(device).eval()
        tokenizer = self.processor.tokenizer
        self.yes_id, self.no_id = (tokenizer.convert_tokens_to_ids(w) for w in ("yes", "no"))
        if tokenizer.unk_token_id in (self.yes_id, self.no_id):
            raise ValueError(f"{path}: the tokenizer has no single token for yes or no")

    @torch.no_grad()
    def probabilities(self, image, phrases: Sequence[str]) -> List[float]:
        """P(yes) for "<phrase>?" about one image, one per phrase."""
        if not phrases:
            return []
        questions = [f"{p}?" for p in phrases]
        inputs = self.processor(images=[image.convert("RGB")] * len(questions), text=questions, padding=True,
                                return_tensors="pt").to(self.device)
        model = self.model
        image_embeds = model.vision_model(pixel_values=inputs["pixel_values"])[0]
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        question = model.text_encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                      encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask,
                                      return_dict=False)[0]
        start = torch.full((len(questions), 1), model.decoder_start_token_id, device=self.device)
        logits = model.text_decoder(input_ids=start, encoder_hidden_states=question,
                                    encoder_attention_mask=inputs["attention_mask"], return_dict=True).logits[:, 0]
        logits = logits.float().cpu().numpy()
        return [p_yes(row, self.yes_id, self.no_id) for row in logits]


def phrases_of(objects: Sequence[dict]) -> List[str]:
    """The prompt's noun phrases, from its structure (T2I-CompBench takes spaCy's noun chunks of the
    prompt: 'a red car', 'a blue dog'; the built-in prompts are made of exactly these)."""
    from .prompts import noun_phrase

    return [noun_phrase(o) for o in objects]

