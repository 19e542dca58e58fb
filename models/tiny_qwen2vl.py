"""A tiny, seeded, randomly initialised Qwen2-VL (a second captioner family beside tiny:llava), built offline.

`tiny:qwen2vl` loads through AutoProcessor + AutoModelForImageTextToText exactly like
Qwen/Qwen2-VL-2B-Instruct or Qwen2.5-VL's checkpoints: its own image processor (dynamic resolution:
the image resized to a multiple of patch x merge within min/max pixels, then patches, with an
image_grid_thw per image), its chat template with <|vision_start|><|image_pad|><|vision_end|>, and
M-RoPE positions. So a `native` captioner is tested through the same code as a 7B one.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .tiny_captioning import word_level

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>", "<unk>"]
# Qwen2-VL's chat template, cut to what a captioning prompt uses (one user turn: images, then text).
QWEN2VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PATCH, MERGE, TEMPORAL = 4, 2, 2


def build_qwen_tokenizer():
    """A word-level tokenizer with Qwen2-VL's special tokens (ids are part of the format: fixed order)."""
    from transformers import PreTrainedTokenizerFast

    tok, _ = word_level(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<unk>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"},
        padding_side="left",
    )


def build_tiny_qwen2vl(path, seed: int = 0) -> Path:
    """A ~1M-parameter Qwen2-VL (2-block vision tower with a 2x2 merger, 2-layer Qwen2) with its processor."""
    from transformers import (
        GenerationConfig, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor, Qwen2VLProcessor,
    )

    folder = Path(path)
    tokenizer = build_qwen_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    hidden, heads = 64, 4
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": heads, "num_key_value_heads": heads, "max_position_embeddings": 1024,
            # M-RoPE: the rotary half of each head (8 of 16) split over time, height and width.
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "initializer_range": 0.5, "pad_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<|im_end|>"),
            "bos_token_id": None,
        },
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": hidden, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": PATCH, "spatial_merge_size": MERGE, "temporal_patch_size": TEMPORAL,
                       "in_channels": 3},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    # As tiny:llava: keep a random model's captions a few distinct words long.
    model.generation_config = GenerationConfig(
        eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"), min_new_tokens=4, no_repeat_ngram_size=1)
    model.save_pretrained(folder)
    unit = PATCH * MERGE
    image_processor = Qwen2VLImageProcessor(
        patch_size=PATCH, merge_size=MERGE, temporal_patch_size=TEMPORAL,
        # Between 2x2 and 6x6 merged tokens: a photo's shape is kept, its tokens few.
        size={"shortest_edge": (2 * unit) ** 2, "longest_edge": (6 * unit) ** 2},
    )
    from transformers import Qwen2VLVideoProcessor

    # The processor holds a video processor too (Qwen2-VL reads videos); captioning never uses it.
    video_processor = Qwen2VLVideoProcessor(patch_size=PATCH, merge_size=MERGE, temporal_patch_size=TEMPORAL)
    Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                     chat_template=QWEN2VL_CHAT_TEMPLATE).save_pretrained(folder)
    return folder
