"""Captioning through the pipeline's own CaptionStage (hf backend), LLaVA-1.5-7B-shaped, random weights.

The model is built in place on the device in bf16 with SDPA, as load_captioner loads one on a GPU (no
14 GB save and reload), and handed to CaptionStage whole (its `loaded` argument). Its tokenizer has the
real 32064-token vocabulary (shape.vocabulary), so the embedding, the LM head and detokenising work at
the real size.
Random weights would stop at a random end-of-sequence token, so every caption is forced to exactly
shape.caption_tokens new tokens (min_new_tokens in the model's generation config, which generate reads).

Variants: eager (dynamic KV cache) at the previous round's batch, then transformers' static KV cache,
whose decoding step generate compiles (torch.compile, CUDA graphs) on a GPU, at each static batch;
the first call at a batch is the warm-up (it compiles) and is timed apart. Each variant gives images/s,
ms per decoding step (the call's time less a prefill forward timed alone, over the steps after the
first token), peak memory, its ratio to eager, and the step against its memory floor: the language
model's weights plus the KV cache read once per step, over MEMORY_FLOOR_BYTES_PER_S. transformers'
continuous batching (generate_batch) is probed and run only where it can take images.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np
import torch

from bench.device_timing import first, peak_gib, reset_peak, timed
from bench.gpu_check import MEMORY_FLOOR_BYTES_PER_S

MODEL_LABEL = "llava-1.5-7b-shape (random weights)"
EAGER_WARM_UP_ROWS = 8  # eager compiles nothing: a small first call loads the kernels


def llava_tokenizer(vocabulary: int):
    """The tiny test tokenizer's words and specials, with filler words up to `vocabulary` (LLaVA's size) as
    ordinary entries of its word-level model (32k added tokens would take seconds to add and to match)."""
    from tokenizers import models
    from transformers import PreTrainedTokenizerFast

    from pixcap.models.tiny_captioning import build_tokenizer

    base = build_tokenizer()
    if vocabulary <= len(base):
        return base
    backend = base.backend_tokenizer
    vocab = backend.get_vocab(with_added_tokens=True)
    size = len(vocab)
    vocab.update({f"w{i}": size + i for i in range(vocabulary - size)})
    backend.model = models.WordLevel(vocab=vocab, unk_token=base.unk_token)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=base.bos_token, eos_token=base.eos_token,
                                   unk_token=base.unk_token, pad_token=base.pad_token,
                                   extra_special_tokens={"image_token": "<image>"}, padding_side="left")


def build_llava(shape, device: str):
    """(processor, model): LLaVA-1.5 at shape's sizes, random weights made on `device` in the stage's dtype."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, GenerationConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    from pixcap.models.tiny_captioning import LLAVA_CHAT_TEMPLATE

    tokenizer = llava_tokenizer(shape.vocabulary)
    vision = CLIPVisionConfig(**shape.vision, image_size=shape.image_size, patch_size=14, projection_dim=768)
    text = LlamaConfig(vocab_size=len(tokenizer), **shape.text, max_position_embeddings=4096,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-2)
    # load_captioner's choice: bf16 + SDPA on a GPU, float32 on a CPU.
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous)
    if device == "cuda":
        model.set_attn_implementation("sdpa")
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, min_new_tokens=shape.caption_tokens)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": shape.image_size},
                                           crop_size={"height": shape.image_size, "width": shape.image_size}),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE)
    return processor, model


def caption_stage(loaded, shape, batch_size: int, static: bool):
    """The pipeline's CaptionStage around the built model, with the KV cache the variant asks for."""
    from pixcap.schemas.stages import CaptionConfig
    from pixcap.stages.caption import CaptionStage

    # generate reads its defaults from the model's generation config: a static cache there has the stage's
    # own generate call allocate it and, on a GPU, compile the decoding step (what kv_cache: static does).
    loaded[1].generation_config.cache_implementation = "static" if static else None
    config = CaptionConfig(model=MODEL_LABEL, max_new_tokens=shape.caption_tokens, batch_size=batch_size,
                           kv_cache="static" if static else "dynamic")
    return CaptionStage(config, loaded=loaded)


def crops_batch(stage, shape, rows: int) -> dict:
    """Rows as model_inputs hands them to the captioner: the stage's own CPU crops of decode's model images
    (short side at the view's size, SA-1B's 3:2 ratio)."""
    from pixcap.schemas import batch as B

    rng = np.random.default_rng(0)
    side = stage.view.size
    crops = [stage.view.crop(rng.integers(0, 256, (side, side * 3 // 2, 3), dtype=np.uint8)) for _ in range(rows)]
    return {B.KEY: [f"k{i}" for i in range(rows)], B.REJECT_STAGE: [""] * rows, B.REJECT_REASON: [""] * rows,
            B.REJECT_ERROR: [""] * rows, stage.rows.pixels: crops}


@torch.inference_mode()
def prefill_seconds(stage, batch: dict) -> float:
    """One forward over the prompt and images with no cache, the last position's logits only: the first
    token's share of a generate call, timed alone so the decoding steps can be told from it."""
    crops = batch[stage.rows.pixels]
    n = len(crops)
    inputs = {"input_ids": stage.prompt_ids.repeat(n, 1), "attention_mask": stage.prompt_mask.repeat(n, 1),
              "pixel_values": stage.view.pixel_values(crops, stage.model.device, stage.model.dtype)}
    seconds, _ = timed(lambda: stage.model(**inputs, use_cache=False, logits_to_keep=1))
    return seconds


def floor_ms(model, batch_size: int, context: float) -> float:
    """The decoding step's memory floor: the language model's weights and `context` positions of KV cache
    per row, each read once per step."""
    text = model.config.get_text_config()
    weights = sum(p.numel() * p.element_size() for name, p in model.named_parameters()
                  if "vision_tower" not in name and "multi_modal_projector" not in name)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv = batch_size * context * text.num_hidden_layers * 2 * text.num_key_value_heads * head_dim * model.dtype.itemsize
    return (weights + kv) / MEMORY_FLOOR_BYTES_PER_S * 1e3


def measure(loaded, shape, batch: dict, batch_size: int, static: bool) -> dict:
    """One variant: the warm-up call, then the timed call over batch_size rows, and its figures."""
    from pixcap.schemas import batch as B

    stage = caption_stage(loaded, shape, batch_size, static)
    rows = first(batch, batch_size)
    reset_peak()
    warm_up, _ = timed(lambda: stage(rows if static else first(batch, min(batch_size, EAGER_WARM_UP_ROWS))))
    seconds, out = timed(lambda: stage(rows))
    peak = peak_gib()
    if any(out[B.REJECT_REASON]):
        raise RuntimeError(f"captioning rejected rows: {sorted(set(out[B.REJECT_ERROR]))[:2]}")
    prefill = prefill_seconds(stage, rows)
    tokens = shape.caption_tokens
    step_ms = max(seconds - prefill, 0.0) / max(tokens - 1, 1) * 1e3
    prompt = stage.prompt_ids.shape[1]
    floor = floor_ms(stage.model, batch_size, prompt + tokens / 2)
    return {"batch_size": batch_size, "kv_cache": "static" if static else "dynamic", "images": batch_size,
            "seconds": seconds, "warm_up_s": warm_up, "images_per_s": batch_size / seconds,
            "tokens_per_s": batch_size * tokens / seconds, "prefill_s": prefill, "ms_per_step": step_ms,
            "floor_ms_per_step": floor, "step_over_floor": step_ms / floor if floor else None,
            # a static cache is read whole every step, padding included: its own floor
            "floor_ms_full_cache": floor_ms(stage.model, batch_size, prompt + tokens),
            "prompt_tokens": prompt, "peak_gib": peak, "first_caption_words": len(out[B.CAPTION][0].split())}


def continuous_batching_support(model) -> tuple:
    """(supported, why): whether the installed transformers' generate_batch can take a LLaVA request with
    its image. Its requests are token id lists; it serves a vision model only if the package passes
    pixel_values anywhere."""
    import transformers

    if not hasattr(model, "generate_batch"):
        return False, f"transformers {transformers.__version__} has no generate_batch"
    try:
        package = importlib.import_module("transformers.generation.continuous_batching")
        sources = [inspect.getsource(package)]
        for found in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            sources.append(inspect.getsource(importlib.import_module(found.name)))
    except (ImportError, OSError, TypeError) as e:
        return False, f"continuous batching could not be inspected: {type(e).__name__}: {e}"
    if not any("pixel_values" in source for source in sources):
        return False, (f"transformers {transformers.__version__}: generate_batch takes token ids only; its requests "
                       "carry no pixel_values, so LLaVA cannot see its image")
    return True, "generate_batch passes pixel_values"


def run(shape, clock, note, context) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    built, (processor, model) = timed(lambda: build_llava(shape, device))
    loaded = (processor, model)
    params = sum(p.numel() for p in model.parameters())
    found = {"build_s": built, "parameters": params, "attention": model.config._attn_implementation,
             "dtype": str(model.dtype), "tokens": shape.caption_tokens, "variants": {}}
    note("build", {k: v for k, v in found.items() if k != "variants"})
    supported, why = continuous_batching_support(model)
    # generate_batch has no way to hand LLaVA its image in the transformers this was written against; a
    # version that does gets this probe's "supported" and still needs its run written here.
    found["variants"]["generate_batch"] = {"skipped" if not supported else "not_run": why}
    note("generate_batch", found["variants"]["generate_batch"])
    largest = max((shape.eager_batch, *shape.static_batches))
    batch = crops_batch(caption_stage(loaded, shape, largest, False), shape, largest)
    plan = [("eager", shape.eager_batch, False)] + [("static", size, True) for size in shape.static_batches]
    eager = None
    for kind, size, static in plan:
        name = f"{kind} b{size}"
        # A static batch may compile first (a minute or more on a GPU; a later batch size may reuse a
        # dynamic-shape graph): not begun with too little time left. One killed midway loses only itself.
        needed = 30 if static and device == "cuda" else 10
        if clock.left() < needed:
            result = {"skipped": f"{clock.left():.0f} s left of the part's budget, {needed} s needed"}
        else:
            try:
                result = measure(loaded, shape, batch, size, static)
            except Exception as e:  # one variant failing (out of memory at 256, a compile error) is its row
                result = {"error": f"{type(e).__name__}: {e}"[:1000]}
                reset_peak()
        if "images_per_s" in result:
            if kind == "eager":  # it runs first: the rate every variant is set against
                eager = result["images_per_s"]
            if eager:
                result["vs_eager"] = result["images_per_s"] / eager
        found["variants"][name] = result
        note(name, result)
    return found
