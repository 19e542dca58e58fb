"""A tiny, seeded, randomly initialised Idefics3 (a third captioner family: SmolVLM's and Idefics3-8B's), built offline.

`tiny:idefics3` loads through AutoProcessor + AutoModelForImageTextToText exactly like
HuggingFaceTB/SmolVLM-Instruct or HuggingFaceM4/Idefics3-8B-Llama3: its own image processor (the image
resized to its longest edge; tiles and their <row_i_col_j> tags when splitting is on, off here so a tiny
model sees one global image), `image_seq_len` <image> tokens between <fake_token_around_image> and
<global-img>, a pixel-shuffle connector, a Llama text model and Idefics3's chat template.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .tiny_captioning import word_level

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                  "<global-img>", "<unk>"]
# Idefics3's (SmolVLM's) chat template: "User:<image>text<end_of_utterance>\nAssistant:".
IDEFICS3_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
IMAGE_SIZE, PATCH, SCALE = 32, 4, 2  # (32 / 4)^2 patches, pixel-shuffled by 2: 16 image tokens
IMAGE_SEQ_LEN = (IMAGE_SIZE // PATCH) ** 2 // SCALE ** 2


def build_idefics3_tokenizer():
    """A word-level tokenizer with Idefics3's special tokens (ids are part of the format: fixed order)."""
    from transformers import PreTrainedTokenizerFast

    tok, _ = word_level(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<end_of_utterance>", pad_token="<|endoftext|>",
                                   bos_token="<|im_start|>", unk_token="<unk>", padding_side="left")


def build_tiny_idefics3(path, seed: int = 0) -> Path:
    """A tiny Idefics3 (2-block SigLIP-style vision tower, pixel-shuffle connector, 2-layer Llama), its processor."""
    from transformers import (
        GenerationConfig, Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor,
    )

    folder = Path(path)
    tokenizer = build_idefics3_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    hidden = 64
    config = Idefics3Config(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": IMAGE_SIZE, "patch_size": PATCH, "num_channels": 3},
        text_config={"model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": hidden,
                     "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 4, "max_position_embeddings": 512, "initializer_range": 0.5,
                     "pad_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<end_of_utterance>"),
                     "bos_token_id": ids("<|im_start|>")},
        scale_factor=SCALE, image_token_id=ids("<image>"), pad_token_id=ids("<|endoftext|>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    # As tiny:llava: keep a random model's captions a few distinct words long.
    model.generation_config = GenerationConfig(
        eos_token_id=ids("<end_of_utterance>"), pad_token_id=ids("<|endoftext|>"), min_new_tokens=4,
        no_repeat_ngram_size=1)
    model.save_pretrained(folder)
    image_processor = Idefics3ImageProcessor(
        do_image_splitting=False, size={"longest_edge": IMAGE_SIZE}, max_image_size={"longest_edge": IMAGE_SIZE})
    Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=IMAGE_SEQ_LEN,
                      chat_template=IDEFICS3_CHAT_TEMPLATE).save_pretrained(folder)
    return folder
