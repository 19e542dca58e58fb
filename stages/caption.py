"""Captions: any image-text-to-text model transformers knows (backend hf), or the captions found beside
the images (sidecar).

A captioner adds its caption and caption_model columns (captioner_rows.py says which, and what its
prompt quotes). A row rejected upstream passes through with an empty caption; an image the captioner
fails on becomes a `caption_error` reject row. The hf backend loads the model with
AutoModelForImageTextToText (LLaVA, LLaVA-NeXT, Qwen2-VL, Idefics3, ...) and its AutoProcessor.
- crop or pad (a fixed square size): it takes the CPU's crops (model_inputs', consumed); with one prompt
  for every image, the prompt's ids are made once and no processor runs on the GPU's path.
- native, or a prompt that quotes captions: the processor runs on the batch (the model image, or the crops).
Greedy, or sampled with one seed per sample (sampling.py).
"""
from __future__ import annotations

import numpy as np
import torch

from pixcap.schemas import rejects as R
from pixcap.schemas import batch as B
from pixcap.schemas.stages import CAPTION_STAGE, CaptionConfig

from .caption_views import view_of
from .captioner_rows import CaptionerRows, as_image
from .outcomes import error_text, in_chunks
from .sampling import SeededSampling

SIDECAR_MODEL = "sidecar"  # caption_model of captions taken from KEY.txt files
STAGE = CAPTION_STAGE


def chat_prompt(processor, prompt: str) -> str:
    """The model's own chat template around one image and the prompt, ready for the answer."""
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True)


@torch.inference_mode()
def generate_captions(model, processor, images: list, prompts: list, max_new_tokens: int, sampling=None) -> list:
    """Captions for images, one chat prompt each, in one left-padded batch.

    Left padding keeps every prompt's last token at the end of the row, where generation
    continues; so an image gets the same caption alone as beside longer prompts.
    """
    inputs = processor(images=images, text=prompts, padding=True, padding_side="left", return_tensors="pt")
    inputs = inputs.to(model.device)
    for key, value in inputs.items():  # pixel values in the model's dtype; ids and grids stay integers
        if torch.is_floating_point(value):
            inputs[key] = value.to(model.dtype)
    return generate_from_inputs(model, processor, inputs, max_new_tokens, sampling)


@torch.inference_mode()
def generate_from_inputs(model, processor, inputs: dict, max_new_tokens: int, sampling=None) -> list:
    """Captions from ready model inputs (input_ids, attention_mask, pixel_values, ...): greedy, or drawn by
    `sampling` (a SeededSampling for these rows)."""
    extra = {"logits_processor": [sampling]} if sampling is not None else {}
    output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens, **extra)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    return [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]


def load_captioner(config: CaptionConfig):
    """(processor, model) for config.model on the GPU if there is one."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    cuda = torch.cuda.is_available()
    # bf16 + SDPA is how a 7B model fits and runs fast on a GPU; CPU bf16 is slow and lossy.
    extra = {"dtype": torch.bfloat16, "attn_implementation": "sdpa"} if cuda else {"dtype": torch.float32}
    # A model folder's auto_map names python files in it; they run only if the job sets
    # trust_remote_code. Weights load as tensors only: a pickled .bin cannot run code.
    processor = AutoProcessor.from_pretrained(config.model, trust_remote_code=config.trust_remote_code)
    model = AutoModelForImageTextToText.from_pretrained(
        config.model, trust_remote_code=config.trust_remote_code, weights_only=True, **extra
    ).to("cuda" if cuda else "cpu").eval()
    if config.kv_cache == "static" or (config.kv_cache == "auto" and cuda):
        # A fixed-shape cache: generate() then compiles the decoding step on a GPU.
        model.generation_config.cache_implementation = "static"
    return processor, model


class CaptionStage:
    """Captions from an image-text-to-text model, in left-padded mini-batches of config.batch_size."""

    def __init__(self, config: CaptionConfig, primary: bool = True, loaded: tuple = None):
        self.config = config
        self.rows = CaptionerRows(config, primary)
        # loaded: a (processor, model) built already, such as bench/gpu_check's 7B shape made in place on the GPU
        self.processor, self.model = load_captioner(config) if loaded is None else loaded
        self.view = view_of(self.processor.image_processor, self.rows.view)
        self.prompt = chat_prompt(self.processor, config.prompt)
        if self.view is not None and not self.rows.quotes:
            # The prompt is the same for every image: its ids (with the image tokens expanded) are
            # made once here, so the GPU's path holds no processor call.
            blank = np.zeros((self.view.size, self.view.size, 3), np.uint8)
            ids = self.processor(images=[blank], text=[self.prompt], return_tensors="pt")
            self.prompt_ids = ids["input_ids"].to(self.model.device)
            self.prompt_mask = ids["attention_mask"].to(self.model.device)

    def _sampling(self, seeds):
        return SeededSampling(seeds, self.rows.temperature, self.rows.top_p) if self.rows.sampled else None

    def caption(self, images: list, prompts: list = None, seeds: list = None) -> list:
        """Captions of whole images through the processor; prompts: the prompt texts (default: the job's)."""
        texts = [chat_prompt(self.processor, p) for p in prompts] if prompts else [self.prompt] * len(images)
        return generate_captions(self.model, self.processor, images, texts, self.config.max_new_tokens,
                                 self._sampling(seeds or [0] * len(images)))

    def caption_crops(self, crops: list, seeds: list = None) -> list:
        """Captions of the CPU's crops (size x size x 3 uint8, as model_inputs makes them), with the one prompt."""
        for crop in crops:
            if crop.shape != (self.view.size, self.view.size, 3):
                raise ValueError(f"a crop of {crop.shape}, not {self.view.size}x{self.view.size}x3")
        n = len(crops)
        inputs = {"input_ids": self.prompt_ids.repeat(n, 1), "attention_mask": self.prompt_mask.repeat(n, 1),
                  "pixel_values": self.view.pixel_values(crops, self.model.device, self.model.dtype)}
        return generate_from_inputs(self.model, self.processor, inputs, self.config.max_new_tokens,
                                    self._sampling(seeds or [0] * n))

    def __call__(self, batch: dict) -> dict:
        rows = self.rows.outcomes(batch)
        prompts = self.rows.prompts(batch, rows)
        seeds = self.rows.seeds(batch)
        crops = batch.get(self.rows.pixels) if self.view is not None else None
        images = batch[B.MODEL_IMAGE] if crops is None else crops
        captions, models = [""] * len(rows), [""] * len(rows)

        def caption_chunk(chunk: list) -> None:
            pixels, chunk_seeds = [as_image(images[i]) for i in chunk], [seeds[i] for i in chunk]
            if crops is not None and not self.rows.quotes:
                texts = self.caption_crops(pixels, chunk_seeds)
            else:
                for image in pixels:
                    if image.size == 0:
                        raise ValueError(f"an empty image ({image.shape})")
                texts = self.caption(pixels, [prompts[i] for i in chunk], chunk_seeds)
            for i, text in zip(chunk, texts):
                captions[i], models[i] = text, self.config.model

        in_chunks(rows.live_rows(), self.config.batch_size, caption_chunk,
                  lambda i, e: rows.reject(i, R.CAPTION_ERROR, error_text(e)))
        return self.rows.output(batch, rows, captions, models)


class SidecarCaptionStage:
    """Captions from the KEY.txt files the read stage found; an image without one is rejected."""

    def __init__(self, config: CaptionConfig, primary: bool = True):
        self.config = config
        self.rows = CaptionerRows(config, primary)

    def __call__(self, batch: dict) -> dict:
        rows = self.rows.outcomes(batch)
        sidecars = batch[B.SIDECAR_CAPTION]
        captions, models = [""] * len(rows), [""] * len(rows)
        for i in rows.live_rows():
            text = (sidecars[i] or "").strip()
            if text:
                captions[i], models[i] = text, SIDECAR_MODEL
            else:
                rows.reject(i, R.NO_CAPTION)
        return self.rows.output(batch, rows, captions, models)

