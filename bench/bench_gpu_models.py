"""GPU throughput of the caption and CLIP stages at the 7B job's model sizes (a benchmark).

Hub weights cannot be fetched offline, so this builds models with the architecture of
llava-hf/llava-1.5-7b-hf (CLIP ViT-L/14-336 + Llama-7B) and of open_clip ViT-L-14, with random
weights, saves them in the real formats and loads them through the stages' own code (bf16 + SDPA
on CUDA). Captions are forced to exactly --tokens new tokens, so images/s is what a real run
gets at that caption length. The Llama vocabulary is the tiny tokenizer's (~600 words instead of
32064): the LM head is then about 2% fewer FLOPs per token than the real model's.

    python bench/bench_gpu_models.py [--tokens 120] [--batch-sizes 8 16 32 64] [--images 64]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch


def build_llava_7b_shape(folder: str, tokens: int) -> None:
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, GenerationConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    from pixcap.models.tiny_captioning import LLAVA_CHAT_TEMPLATE, build_tokenizer

    tokenizer = build_tokenizer()
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-2)
    torch.manual_seed(0)
    with torch.device("cuda"):
        torch.set_default_dtype(torch.bfloat16)
        model = LlavaForConditionalGeneration(config).eval()
        torch.set_default_dtype(torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, min_new_tokens=tokens)
    model.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE)
    processor.save_pretrained(folder)


def photos(n: int) -> list:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (336, 448 + 16 * (i % 4), 3), dtype=np.uint8) for i in range(n)]


def batch_of(images: list, **columns) -> dict:
    from pixcap.schemas import batch as B

    n = len(images)
    return {B.KEY: [f"k{i}" for i in range(n)], B.MODEL_IMAGE: images, B.REJECT_STAGE: [""] * n,
            B.REJECT_REASON: [""] * n, B.REJECT_ERROR: [""] * n, **columns}


def timed(stage, batch) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    stage(batch)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_caption(args, folder: str) -> None:
    from pixcap.schemas.job import CaptionConfig
    from pixcap.stages.caption import CaptionStage

    t = time.perf_counter()
    build_llava_7b_shape(folder, args.tokens)
    print(f"built and saved a LLaVA-1.5-7B-shaped model in {time.perf_counter() - t:.0f} s")
    images = photos(args.images)
    for size in args.batch_sizes:
        t = time.perf_counter()
        stage = CaptionStage(CaptionConfig(model=folder, max_new_tokens=args.tokens, batch_size=size))
        load = time.perf_counter() - t
        timed(stage, batch_of(images[:size]))  # warm-up
        torch.cuda.reset_peak_memory_stats()
        seconds = timed(stage, batch_of(images))
        out = stage(batch_of(images[:2]))
        words = len(out["caption"][0].split())
        print(f"caption  batch {size:3d}: {args.images / seconds:7.2f} images/s  {args.images * args.tokens / seconds:8.0f} tokens/s"
              f"  peak {torch.cuda.max_memory_allocated() / 2**30:5.1f} GiB  (load {load:.0f} s, {words} words/caption)")
        del stage
        torch.cuda.empty_cache()


def bench_clip(args, folder: str) -> None:
    import open_clip

    from pixcap.schemas.job import ClipConfig
    from pixcap.stages.clip import ClipStage

    torch.manual_seed(0)
    checkpoint = os.path.join(folder, "vit-l-14.pt")
    torch.save(open_clip.create_model("ViT-L-14", pretrained=None).state_dict(), checkpoint)
    nouns = "dog cat tree car house street sky cloud person bicycle mountain river".split()
    images = photos(args.images)
    columns = {"caption": ["a dog and a cat under a tree near a car in the street"] * len(images),
               "nouns": [nouns[: 6 + i % 6] for i in range(len(images))]}
    for size in (32, 128):
        stage = ClipStage(ClipConfig(model="ViT-L-14", pretrained=checkpoint, batch_size=size))
        timed(stage, batch_of(images[:size], **{k: v[:size] for k, v in columns.items()}))
        seconds = timed(stage, batch_of(images, **columns))
        print(f"clip     batch {size:3d}: {args.images / seconds:7.2f} images/s (ViT-L-14, ~9 nouns/image)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=120)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--skip-caption", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu_models: no CUDA device; this benchmark measures the GPU paths")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as folder:
        bench_clip(args, folder)
        if not args.skip_caption:
            bench_caption(args, folder)


if __name__ == "__main__":
    main()
