"""Captions through vLLM's offline engine (backend vllm): LLaVA with continuous batching.

transformers' generate decodes a batch in lock-step: every row waits for the longest caption,
and a finished row's slot idles until the batch ends. vLLM schedules requests one token step at
a time, admits a new request the moment one finishes, and keeps the KV cache in pages, so the
GPU stays full. The stage hands it a few hundred requests at once (caption.batch_size) and lets
it schedule them.

The row contract is CaptionStage's: adds `caption` and `caption_model`; a row rejected upstream
passes through with an empty caption; a request vLLM fails on becomes a `caption_error` reject,
and never costs its neighbours. vLLM is an optional extra (`pip install 'pixcap[vllm]'`),
imported only when an engine is started.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from pixcap.schemas import rejects as R
from pixcap.schemas import batch as B
from pixcap.schemas.stages import CaptionConfig

from .caption import STAGE, chat_prompt
from .outcomes import RowOutcomes, error_text, in_chunks

# vLLM reserves this share of the GPU's memory up front (weights, activations, then KV cache
# pages). Below its own default of 0.92, so the CUDA context and a co-located CLIP actor fit.
GPU_MEMORY_UTILIZATION = 0.85


def captioning_request(prompt: str, image: np.ndarray) -> dict:
    """One vLLM prompt: the chat text with its one <image> placeholder, which vLLM expands into the
    vision tower's tokens itself, and the image it stands for."""
    return {"prompt": prompt, "multi_modal_data": {"image": Image.fromarray(np.asarray(image, dtype=np.uint8))}}


def output_texts(outputs: list) -> list:
    """The generated text of each of vLLM's RequestOutputs (one completion each), stripped."""
    return [output.outputs[0].text.strip() for output in outputs]


def one_per_request(texts: list, requests: int) -> list:
    """The texts, checked to be one per request: LLM.generate answers in request order, and a
    count that differs means something was lost, which must never shift captions between rows."""
    if len(texts) != requests:
        raise RuntimeError(f"vLLM returned {len(texts)} outputs for {requests} requests")
    return texts


def greedy_sampling(max_new_tokens: int):
    """vLLM's sampling parameters for greedy captions, as the hf backend's do_sample=False."""
    from vllm import SamplingParams

    return SamplingParams(temperature=0.0, max_tokens=max_new_tokens, skip_special_tokens=True)


def engine_arguments(config: CaptionConfig) -> dict:
    """vLLM's engine arguments for the job's captioning model."""
    return dict(
        model=config.model,
        dtype="bfloat16",
        # A model folder's own python runs only if the job asks; weights load as safetensors
        # only, so a pickled checkpoint cannot run code (as in the hf backend).
        trust_remote_code=config.trust_remote_code,
        load_format="safetensors",
        limit_mm_per_prompt={"image": 1},
        gpu_memory_utilization=GPU_MEMORY_UTILIZATION,
        seed=0,
    )


class VllmEngine:
    """The GPU side: vLLM's LLM loaded once, and greedy generation over a list of requests."""

    def __init__(self, config: CaptionConfig):
        from vllm import LLM

        self.llm = LLM(**engine_arguments(config))
        self.sampling = greedy_sampling(config.max_new_tokens)

    def captions(self, requests: list) -> list:
        return output_texts(self.llm.generate(requests, self.sampling, use_tqdm=False))


class VllmCaptionStage:
    """LLaVA captions from vLLM, greedy; requests go to the engine config.batch_size at a time."""

    def __init__(self, config: CaptionConfig, engine_class=VllmEngine):
        from transformers import AutoProcessor

        self.config = config
        # The processor only renders the model's own chat template around the prompt; vLLM does
        # the image processing and tokenising itself.
        processor = AutoProcessor.from_pretrained(config.model, trust_remote_code=config.trust_remote_code)
        self.prompt = chat_prompt(processor, config.prompt)
        self.engine = engine_class(config)

    def __call__(self, batch: dict) -> dict:
        rows = RowOutcomes(batch, STAGE)
        # The CPU's crop when model_inputs made one: vLLM's own resize and crop of it are then
        # the identity, so the GPU process does no real image work.
        images = batch[B.CAPTION_PIXELS] if B.CAPTION_PIXELS in batch else batch[B.MODEL_IMAGE]
        captions, models = [""] * len(rows), [""] * len(rows)

        def caption_chunk(chunk: list) -> None:
            texts = self.engine.captions([captioning_request(self.prompt, images[i]) for i in chunk])
            for i, text in zip(chunk, one_per_request(texts, len(chunk))):
                captions[i], models[i] = text, self.config.model

        in_chunks(rows.live_rows(), self.config.batch_size, caption_chunk,
                  lambda i, e: rows.reject(i, R.CAPTION_ERROR, error_text(e)))
        out = {k: v for k, v in batch.items() if k != B.CAPTION_PIXELS}
        out.update(rows.columns())
        out[B.CAPTION], out[B.CAPTION_MODEL] = captions, models
        return out
