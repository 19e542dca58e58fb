"""Captioning and CLIP scoring on one GPU at the 7B job's model sizes: hf eager, hf static cache, vllm.

    python -m bench.bench_gpu_models [--tokens 120] [--images 256] [--hf-batch-size 64]
                                     [--backends clip hf-eager hf-static vllm]

Hub weights cannot be fetched offline, so this builds LLaVA-1.5-7B's architecture (CLIP
ViT-L/14-336 + Llama-7B, the real 32064-token vocabulary) and open_clip ViT-L-14 with random
weights, saves them in the real formats, and loads them through the stages' own code. Each
backend runs in a process of its own, one after the other on the same GPU and the same images,
so one's memory never weighs on the next.

Random weights would stop at a random end-of-sequence token, so every caption is forced to
exactly --tokens new tokens (min_new_tokens in the model's generation config for hf; min_tokens
and ignore_eos for vLLM): images/s is what a real run gets at that caption length.

- hf-eager: CaptionStage as the hf backend runs it (bf16, SDPA, dynamic KV cache).
- hf-static: the same stage with transformers' static KV cache, whose decoding step
  transformers compiles; the first (compiling) batch is timed apart as warm-up.
- vllm: VllmCaptionStage (stages/caption_vllm.py), every request handed over at once.
- clip: ViT-L-14 at batch 256: the model's forward alone on model-ready bf16 tensors (weights
  in bf16, and fp32 weights under autocast as ClipStage loads them), and ClipStage as a whole.

Every stage gets what the pipeline's CPU tasks hand the GPU actors: the uint8 crops that
ModelInputsStage makes from decode's model image, made before the clock starts (their CPU rate
is reported as cpu_model_inputs_images_per_s).

Peak memory: torch's peak allocation in the process, and the device's memory in use at the end
(nvidia-smi's view; vLLM reserves its gpu_memory_utilization share up front, by design).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench.device_timing import first, peak_gib, timed

LLAVA_VOCABULARY = 32064  # llava-hf/llava-1.5-7b-hf: Llama's 32000 + <image>, <pad> and padding to 64
BACKENDS = ("clip", "hf-eager", "hf-static", "vllm")


# LLaVA-1.5-7B's sizes; "small" is the same build at toy sizes, for checking the bench on a CPU.
SHAPES = {
    "7b": dict(vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
               text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=32)),
    "small": dict(vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
                  text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                            num_key_value_heads=2)),
}


# open_clip model and (batch size, batches) per shape; ViT-L-14 is the 7B job's scorer.
CLIP_SHAPES = {"7b": ("ViT-L-14", 256, 4), "small": ("ViT-B-32", 8, 1)}


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_llava(folder: str, tokens: int, shape: str) -> None:
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, GenerationConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    from pixcap.models.tiny_captioning import LLAVA_CHAT_TEMPLATE, build_tokenizer

    tokenizer = build_tokenizer()
    # Filler words up to the real vocabulary, so the LM head, the sampler and detokenising all
    # work at the real size and every generated id decodes.
    tokenizer.add_tokens([f"w{i}" for i in range(LLAVA_VOCABULARY - len(tokenizer))])
    vision = CLIPVisionConfig(**SHAPES[shape]["vision"], image_size=336, patch_size=14, projection_dim=768)
    text = LlamaConfig(vocab_size=len(tokenizer), **SHAPES[shape]["text"], max_position_embeddings=4096,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-2)
    torch.manual_seed(0)
    with torch.device(device()):
        torch.set_default_dtype(torch.bfloat16)
        model = LlavaForConditionalGeneration(config).eval()
        torch.set_default_dtype(torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, min_new_tokens=tokens)
    model.save_pretrained(folder)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE)
    processor.save_pretrained(folder)


def build_clip_checkpoint(path: str, name: str) -> None:
    import open_clip
    import torch

    torch.manual_seed(0)
    torch.save(open_clip.create_model(name, pretrained=None).state_dict(), path)


def model_images(n: int) -> list:
    """Decode's model images at SA-1B's ratio: short side 336, long side 504 (or 448-552)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (336, 504 + 16 * (i % 4 - 2), 3), dtype=np.uint8) for i in range(n)]


def batch_of(images: list, **columns) -> dict:
    from pixcap.schemas import batch as B

    n = len(images)
    return {B.KEY: [f"k{i}" for i in range(n)], B.MODEL_IMAGE: images, B.REJECT_STAGE: [""] * n,
            B.REJECT_REASON: [""] * n, B.REJECT_ERROR: [""] * n, **columns}


def model_inputs(args, images: list, **columns) -> tuple:
    """The batch as the pipeline's CPU tasks hand it to the GPU actors: LLaVA's and CLIP's crops
    made by ModelInputsStage (stages/model_inputs.py); returns (batch, CPU images/s)."""
    from pixcap.schemas.stages import CaptionConfig, ClipConfig
    from pixcap.stages.model_inputs import ModelInputsStage

    name = CLIP_SHAPES[args.shape][0]
    stage = ModelInputsStage(CaptionConfig(model=args.llava), ClipConfig(model=name, pretrained=args.clip_checkpoint))
    start = time.perf_counter()
    batch = stage(batch_of(images, **columns))
    return batch, len(images) / (time.perf_counter() - start)


def memory() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"torch_peak_gib": math.nan, "device_used_gib": math.nan}
    free, total = torch.cuda.mem_get_info()
    return {"torch_peak_gib": peak_gib(), "device_used_gib": (total - free) / 2**30}


def caption_result(images: int, tokens: int, seconds: float, **extra) -> dict:
    return {"images_per_s": images / seconds, "tokens_per_s": images * tokens / seconds, "seconds": seconds,
            **memory(), **extra}


def run_hf(args, static: bool) -> dict:
    import torch

    from pixcap.schemas import batch as B
    from pixcap.schemas.stages import CaptionConfig
    from pixcap.stages.caption import CaptionStage

    batch, cpu_rate = model_inputs(args, model_images(args.images))
    size = args.hf_batch_size
    stage = CaptionStage(CaptionConfig(model=args.llava, max_new_tokens=args.tokens, batch_size=size))
    if static:
        # generate reads its defaults from the model's generation config: a static cache there makes
        # the stage's own generate call allocate it once and compile the decoding step.
        stage.model.generation_config.cache_implementation = "static"
    warm_up = timed(lambda: stage(first(batch, size)))[0]  # compiles, for static
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    out = {}
    seconds = timed(lambda: out.update(stage(batch)))[0]
    assert not any(out[B.REJECT_REASON]), set(out[B.REJECT_ERROR])
    generated = stage.processor.tokenizer(out[B.CAPTION][0], add_special_tokens=False)["input_ids"]
    return caption_result(len(batch[B.KEY]), args.tokens, seconds, warm_up_s=warm_up, batch_size=size,
                          first_caption_tokens=len(generated), cpu_model_inputs_images_per_s=cpu_rate)


def run_vllm(args) -> dict:
    from vllm import SamplingParams

    from pixcap.schemas import batch as B
    from pixcap.schemas.stages import CaptionConfig
    from pixcap.stages.caption_vllm import VllmCaptionStage, captioning_request

    images = model_images(args.images)
    batch, cpu_rate = model_inputs(args, images)
    start = time.perf_counter()
    stage = VllmCaptionStage(CaptionConfig(model=args.llava, max_new_tokens=args.tokens, batch_size=len(images)))
    load = time.perf_counter() - start
    # Random weights: forced to exactly --tokens, as min_new_tokens does for hf.
    stage.engine.sampling = SamplingParams(temperature=0.0, max_tokens=args.tokens, min_tokens=args.tokens,
                                           ignore_eos=True, skip_special_tokens=True)
    check = stage.engine.llm.generate([captioning_request(stage.prompt, im) for im in batch[B.CAPTION_PIXELS][:8]],
                                      stage.engine.sampling, use_tqdm=False)  # also the warm-up
    lengths = {len(output.outputs[0].token_ids) for output in check}
    assert lengths == {args.tokens}, lengths
    out = {}
    seconds = timed(lambda: out.update(stage(batch)))[0]
    assert not any(out[B.REJECT_REASON]), set(out[B.REJECT_ERROR])
    return caption_result(len(images), args.tokens, seconds, load_s=load, requests_per_call=len(images),
                          cpu_model_inputs_images_per_s=cpu_rate)


def run_clip(args) -> dict:
    import torch

    from pixcap.schemas import batch as B
    from pixcap.schemas.stages import ClipConfig
    from pixcap.stages.clip import ClipStage
    from pixcap.stages.preprocess import clip_view

    name, size, batches = CLIP_SHAPES[args.shape]
    count = size * batches
    stage = ClipStage(ClipConfig(model=name, pretrained=args.clip_checkpoint, batch_size=size))
    view = clip_view(stage.model)
    images = model_images(count)
    crops = [view.crop(image) for image in images]  # the CPU side, done before timing
    tensors = [view.pixel_values(crops[i:i + size], device(), torch.bfloat16) for i in range(0, count, size)]
    results = {}

    @torch.inference_mode()
    def forward_all(model, autocast: bool):
        for pixels in tensors:
            with torch.autocast(device(), dtype=torch.bfloat16, enabled=autocast):
                model.encode_image(pixels if autocast else pixels.to(torch.bfloat16))

    forward_all(stage.model, True)
    results["forward_fp32_weights_autocast_images_per_s"] = count / timed(lambda: forward_all(stage.model, True))[0]
    bf16 = stage.model.to(torch.bfloat16)
    forward_all(bf16, False)
    results["forward_bf16_weights_images_per_s"] = count / timed(lambda: forward_all(bf16, False))[0]
    stage.model.float()

    nouns = "dog cat tree car house street sky cloud person bicycle mountain river".split()
    columns = {B.CAPTION: ["a dog and a cat under a tree near a car in the street"] * size,
               B.NOUNS: [nouns[: 6 + i % 6] for i in range(size)]}
    batch, _ = model_inputs(args, images[:size], **columns)  # the crops the pipeline's CPU tasks make
    stage(batch)
    results["clip_stage_images_per_s"] = size / timed(lambda: stage(batch))[0]
    return {**results, **memory(), "model": name, "batch_size": size}


def worker(args) -> None:
    import torch

    if args.worker == "build":
        build_llava(args.llava, args.tokens, args.shape)
        build_clip_checkpoint(args.clip_checkpoint, CLIP_SHAPES[args.shape][0])
        result = {}
    elif args.worker == "clip":
        result = run_clip(args)
    elif args.worker == "vllm":
        result = run_vllm(args)
    else:
        result = run_hf(args, static=args.worker == "hf-static")
    result["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print("RESULT " + json.dumps(result), flush=True)


def run_worker(args, name: str, folder: str) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--tokens", str(args.tokens),
               "--images", str(args.images), "--hf-batch-size", str(args.hf_batch_size), "--shape", args.shape,
               "--llava", os.path.join(folder, "llava-7b-shape"), "--clip-checkpoint", os.path.join(folder, "vit-l-14.pt")]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"error": " | ".join(tail)[-600:]}
    return {**json.loads(lines[-1][len("RESULT "):]), "wall_s": time.perf_counter() - start}


def report(name: str, result: dict) -> str:
    if "error" in result:
        return f"{name:<10} failed: {result['error']}"
    if name == "clip":
        return (f"{name:<10} {result['model']} batch {result['batch_size']}: forward on model-ready tensors "
                f"{result['forward_bf16_weights_images_per_s']:7.0f} images/s (bf16 weights), "
                f"{result['forward_fp32_weights_autocast_images_per_s']:7.0f} (fp32 weights, autocast); "
                f"ClipStage on the CPU tasks' crops {result['clip_stage_images_per_s']:6.0f} images/s")
    extra = (f"batch {result['batch_size']}, warm-up {result['warm_up_s']:.0f} s, "
             f"first caption {result['first_caption_tokens']} tokens" if "batch_size" in result
             else f"{result['requests_per_call']} requests at once, load {result['load_s']:.0f} s")
    return (f"{name:<10} {result['images_per_s']:7.2f} images/s {result['tokens_per_s']:8.0f} tokens/s  "
            f"peak {result['torch_peak_gib']:5.1f} GiB torch, {result['device_used_gib']:5.1f} GiB device  ({extra}; "
            f"its crops made on one CPU core at {result['cpu_model_inputs_images_per_s']:.0f} images/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=120)
    parser.add_argument("--images", type=int, default=256, help="images per captioning backend")
    parser.add_argument("--hf-batch-size", type=int, default=64)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--worker", choices=("build",) + BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--llava", help=argparse.SUPPRESS)
    parser.add_argument("--clip-checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--shape", choices=SHAPES, default="7b", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    import torch

    if not torch.cuda.is_available() and args.shape == "7b":  # the small shape checks the bench on a CPU
        raise SystemExit("bench_gpu_models: no CUDA device; this benchmark measures the GPU paths")
    with tempfile.TemporaryDirectory() as folder:
        built = run_worker(args, "build", folder)
        if "error" in built:
            raise SystemExit(f"building the models failed: {built['error']}")
        print(f"device: {built['device']}, torch {torch.__version__}; built LLaVA-1.5 at {args.shape} sizes "
              f"(vocabulary {LLAVA_VOCABULARY}) and {CLIP_SHAPES[args.shape][0]} in {built['wall_s']:.0f} s; "
              f"{args.images} images, {args.tokens} new tokens each")
        for name in args.backends:
            print(report(name, run_worker(args, name, folder)), flush=True)


if __name__ == "__main__":
    main()
