"""Captions: LLaVA through transformers (backend hf), or the captions found beside the images (sidecar).

Both add the `caption` and `caption_model` columns. A row rejected upstream passes through with
an empty caption; an image the captioner fails on becomes a `caption_error` reject row.
The hf backend takes the CPU's crops (CAPTION_PIXELS, consumed) when the batch has them, and
otherwise runs the processor on MODEL_IMAGE itself (the bench and direct callers).
"""
from __future__ import annotations

import numpy as np
import torch

from pixcap.schemas import rejects as R
from pixcap.schemas import batch as B
from pixcap.schemas.stages import CaptionConfig

from .outcomes import RowOutcomes, error_text, in_chunks
from .preprocess import llava_view

SIDECAR_MODEL = "sidecar"  # caption_model of captions taken from KEY.txt files
STAGE = "caption"


def chat_prompt(processor, prompt: str) -> str:
    """The model's own chat template around one image and the prompt, ready for the answer."""
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True)


@torch.inference_mode()
def generate_captions(model, processor, images: list, prompts: list, max_new_tokens: int) -> list:
    """Greedy captions for images, one chat prompt each, in one left-padded batch.

    Left padding keeps every prompt's last token at the end of the row, where generation
    continues; so an image gets the same caption alone as beside longer prompts.
    """
    inputs = processor(images=images, text=prompts, padding=True, padding_side="left", return_tensors="pt")
    inputs = inputs.to(model.device, dtype=model.dtype)  # casts pixel_values only, never the ids
    return generate_from_inputs(model, processor, inputs, max_new_tokens)


@torch.inference_mode()
def generate_from_inputs(model, processor, inputs: dict, max_new_tokens: int) -> list:
    """Greedy captions from ready model inputs (input_ids, attention_mask, pixel_values)."""
    output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    return [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]


def _with_captions(batch: dict, rows: RowOutcomes, captions: list, models: list) -> dict:
    out = {k: v for k, v in batch.items() if k != B.CAPTION_PIXELS}
    out.update(rows.columns())
    out[B.CAPTION], out[B.CAPTION_MODEL] = captions, models
    return out


class CaptionStage:
    """LLaVA captions, greedy, in left-padded mini-batches of config.batch_size."""

    def __init__(self, config: CaptionConfig):
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        self.config = config
        cuda = torch.cuda.is_available()
        # bf16 + SDPA is how the 7B model fits and runs fast on a GPU; CPU bf16 is slow and lossy.
        extra = {"dtype": torch.bfloat16, "attn_implementation": "sdpa"} if cuda else {"dtype": torch.float32}
        # A model folder's auto_map names python files in it; they run only if the job sets
        # caption.trust_remote_code. Weights load as tensors only: a pickled .bin cannot run code.
        self.processor = AutoProcessor.from_pretrained(config.model, trust_remote_code=config.trust_remote_code)
        self.model = LlavaForConditionalGeneration.from_pretrained(
            config.model, trust_remote_code=config.trust_remote_code, weights_only=True, **extra
        ).to("cuda" if cuda else "cpu").eval()
        if config.kv_cache == "static" or (config.kv_cache == "auto" and cuda):
            # A fixed-shape cache: generate() then compiles the decoding step on a GPU.
            self.model.generation_config.cache_implementation = "static"
        self.prompt = chat_prompt(self.processor, config.prompt)
        self.view = llava_view(self.processor.image_processor)
        # The prompt is the same for every image: its ids (with the image tokens expanded) are
        # made once here, so the GPU's path holds no processor call.
        blank = np.zeros((self.view.size, self.view.size, 3), np.uint8)
        ids = self.processor(images=[blank], text=[self.prompt], return_tensors="pt")
        self.prompt_ids = ids["input_ids"].to(self.model.device)
        self.prompt_mask = ids["attention_mask"].to(self.model.device)

    def caption(self, images: list) -> list:
        return generate_captions(self.model, self.processor, images, [self.prompt] * len(images),
                                 self.config.max_new_tokens)

    def caption_crops(self, crops: list) -> list:
        """Captions of LLaVA crops (size x size x 3 uint8, as model_inputs makes them)."""
        for crop in crops:
            if crop.shape != (self.view.size, self.view.size, 3):
                raise ValueError(f"a crop of {crop.shape}, not {self.view.size}x{self.view.size}x3")
        n = len(crops)
        inputs = {"input_ids": self.prompt_ids.repeat(n, 1), "attention_mask": self.prompt_mask.repeat(n, 1),
                  "pixel_values": self.view.pixel_values(crops, self.model.device, self.model.dtype)}
        return generate_from_inputs(self.model, self.processor, inputs, self.config.max_new_tokens)

    def __call__(self, batch: dict) -> dict:
        rows = RowOutcomes(batch, STAGE)
        crops = batch.get(B.CAPTION_PIXELS)
        images, caption = (batch[B.MODEL_IMAGE], self.caption) if crops is None else (crops, self.caption_crops)
        captions, models = [""] * len(rows), [""] * len(rows)

        def caption_chunk(chunk: list) -> None:
            for i, text in zip(chunk, caption([np.asarray(images[i]) for i in chunk])):
                captions[i], models[i] = text, self.config.model

        in_chunks(rows.live_rows(), self.config.batch_size, caption_chunk,
                  lambda i, e: rows.reject(i, R.CAPTION_ERROR, error_text(e)))
        return _with_captions(batch, rows, captions, models)


class SidecarCaptionStage:
    """Captions from the KEY.txt files the read stage found; an image without one is rejected."""

    def __init__(self, config: CaptionConfig):
        self.config = config

    def __call__(self, batch: dict) -> dict:
        rows = RowOutcomes(batch, STAGE)
        sidecars = batch[B.SIDECAR_CAPTION]
        captions, models = [""] * len(rows), [""] * len(rows)
        for i in rows.live_rows():
            text = (sidecars[i] or "").strip()
            if text:
                captions[i], models[i] = text, SIDECAR_MODEL
            else:
                rows.reject(i, R.NO_CAPTION)
        return _with_captions(batch, rows, captions, models)
