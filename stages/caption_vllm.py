"""Captions through vLLM's offline engine (backend vllm): any model vLLM serves, with continuous batching.

transformers' generate decodes a batch in lock-step: every row waits for the longest caption,
and a finished row's slot idles until the batch ends. vLLM schedules requests one token step at
a time, admits a new request the moment one finishes, and keeps the KV cache in pages, so the
GPU stays full. The stage hands it a few hundred requests at once (caption.batch_size) and lets
it schedule them.

The row contract is CaptionStage's (captioner_rows.py: its columns, quoted captions, seeds); a row
rejected upstream passes through with an empty caption; a request vLLM fails on becomes a
`caption_error` reject, and never costs its neighbours. The prompt is the model's own chat template
(its processor's), and a sampled captioner's requests carry their per-sample seeds. vLLM is an optional extra (`pip install 'pixcap[vllm]'`),
imported only when an engine is started.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from pixcap.schemas import rejects as R
from pixcap.schemas import batch as B
from pixcap.schemas.stages import CaptionConfig

from .caption import chat_prompt
from .captioner_rows import CaptionerRows
from .outcomes import error_text, in_chunks

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


def seeded_sampling(max_new_tokens: int, temperature: float, top_p: float, seeds: list) -> list:
    """vLLM's sampling parameters for sampled captions, one per request with its sample's seed."""
    from vllm import SamplingParams

    return [SamplingParams(temperature=temperature, top_p=top_p, seed=int(seed), max_tokens=max_new_tokens,
                           skip_special_tokens=True) for seed in seeds]


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
        self.config = config
        self.sampling = greedy_sampling(config.max_new_tokens)

    def captions(self, requests: list, seeds: list = None) -> list:
        sampling = self.sampling if seeds is None else seeded_sampling(
            self.config.max_new_tokens, self.config.temperature, self.config.top_p, seeds)
        return output_texts(self.llm.generate(requests, sampling, use_tqdm=False))


class VllmCaptionStage:
    """Captions from vLLM, greedy or seeded per sample; requests go to the engine config.batch_size at a time."""

    def __init__(self, config: CaptionConfig, engine_class=VllmEngine, primary: bool = True):
        from transformers import AutoProcessor

        self.config = config
        self.rows = CaptionerRows(config, primary)
        # The processor only renders the model's own chat template around the prompt; vLLM does
        # the image processing and tokenising itself.
        self.processor = AutoProcessor.from_pretrained(config.model, trust_remote_code=config.trust_remote_code)
        self.prompt = chat_prompt(self.processor, config.prompt)
        self.engine = engine_class(config)

    def __call__(self, batch: dict) -> dict:
        rows = self.rows.outcomes(batch)
        prompts = self.rows.prompts(batch, rows)
        seeds = self.rows.seeds(batch)
        # The CPU's crop when model_inputs made one: vLLM's own resize and crop of it are then
        # the identity, so the GPU process does no real image work. A native view sends the model image.
        images = batch[self.rows.pixels] if self.rows.pixels in batch else batch[B.MODEL_IMAGE]
        captions, models = [""] * len(rows), [""] * len(rows)

        def prompt_of(i: int) -> str:
            return chat_prompt(self.processor, prompts[i]) if self.rows.quotes else self.prompt

        def caption_chunk(chunk: list) -> None:
            requests = [captioning_request(prompt_of(i), images[i]) for i in chunk]
            texts = (self.engine.captions(requests, [seeds[i] for i in chunk]) if self.rows.sampled
                     else self.engine.captions(requests))
            for i, text in zip(chunk, one_per_request(texts, len(chunk))):
                captions[i], models[i] = text, self.config.model

        in_chunks(rows.live_rows(), self.config.batch_size, caption_chunk,
                  lambda i, e: rows.reject(i, R.CAPTION_ERROR, error_text(e)))
        return self.rows.output(batch, rows, captions, models)
