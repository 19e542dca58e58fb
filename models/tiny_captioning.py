"""Tiny, seeded, randomly initialised captioning and scoring models (LLaVA, open_clip), built offline.

`tiny:llava` loads through AutoProcessor + LlavaForConditionalGeneration exactly like
llava-hf/llava-1.5-7b-hf, and `tiny:clip` through open_clip like ViT-L-14, so tests and the
local job run the same loading code as the 7B cluster job. Nothing is downloaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .tiny import CLIP_NAME


# LLaVA-1.5's chat template (as shipped with llava-hf/llava-1.5-7b-hf).
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]

# Real English words, so that random captions are words and spaCy finds nouns among them.
# Prompt and template words are included so the prompt tokenizes without <unk>.
WORDS = """
. , : ; ! ? ' - user assistant describe this image and its style in a very detailed manner
the a an of to with on at by for from into over under near behind above below between
is are was were be has have had it its they their there here which that who what where
of as or but not no all some many few several two three four five one other another each
small large big tiny huge tall short long wide old new young bright dark light red green
blue yellow white black brown gray orange pink purple golden silver wooden metal glass
stone soft hard warm cold wet dry sunny cloudy quiet busy empty full round square flat
beautiful colorful simple modern ancient rustic vintage realistic painted blurry sharp
sits stands walks runs flies holds looks shows lies grows hangs covers surrounds leads
sitting standing walking running flying holding looking showing lying growing hanging
man woman person people child children boy girl baby family crowd friend worker player
dog cat horse cow sheep bird fish duck chicken elephant lion tiger bear deer rabbit
tree trees flower flowers grass leaf leaves plant plants forest garden field park lawn
sky cloud clouds sun moon star rain snow water river lake sea ocean beach wave waves
mountain mountains hill hills rock rocks sand desert island valley road street path
bridge building buildings house houses city town village tower church castle wall
window windows door roof floor room kitchen table chair bed sofa lamp shelf book books
car cars bus truck bicycle bike train plane boat ship motorcycle wheel sign light
phone computer screen camera clock bottle cup glass plate bowl food bread cake fruit
apple orange banana pizza sandwich coffee tea shirt hat dress jacket shoe shoes bag
umbrella ball kite toy box basket fence bench pole flag statue fountain painting
picture photo background foreground scene view corner side edge top bottom center
front middle surface pattern texture color shape line shadow reflection detail
morning evening night day winter summer autumn spring sunset sunrise light air fire
paris london tokyo york john mary google
""".split()


def word_level(special_tokens: list):
    """(tokenizers.Tokenizer, its vocabulary): word-level over WORDS, these special tokens first, then the
    words once each, in a fixed order (ids are part of the format); lowercasing, a whitespace and
    punctuation split, and a decoder that joins words with spaces and tidies punctuation. Each tiny
    captioner family's tokenizer is this with its own special tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    words = special_tokens + list(dict.fromkeys(w for w in WORDS if w not in special_tokens))
    vocab = {word: i for i, word in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens(special_tokens)
    return tok, vocab


def build_tokenizer():
    """LLaVA's: a word-level tokenizer that adds <s> in front."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok, vocab = word_level(SPECIAL_TOKENS)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", extra_special_tokens={"image_token": "<image>"}, padding_side="left",
    )


def build_tiny_llava(path, seed: int = 0) -> Path:
    """A ~1M-parameter LLaVA-1.5 (32 px CLIP vision tower + 2-layer Llama) with its processor."""
    from transformers import (
        CLIPImageProcessor, CLIPVisionConfig, GenerationConfig, LlamaConfig, LlavaConfig,
        LlavaForConditionalGeneration, LlavaProcessor,
    )

    folder = Path(path)
    tokenizer = build_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.5,  # wide weights make greedy decoding wander across words
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-2,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    # A random model would often stop at once or loop on one word; the generation config
    # (honoured by generate() like any model's) keeps its captions a few distinct words long.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, min_new_tokens=4, no_repeat_ngram_size=1,
    )
    model.save_pretrained(folder)

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": vision.image_size},
        crop_size={"height": vision.image_size, "width": vision.image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=vision.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    processor.save_pretrained(folder)
    return folder


TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    # open_clip's bundled SimpleTokenizer: its vocabulary and 77-token context.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def build_tiny_clip(path, seed: int = 0) -> tuple:
    """A tiny open_clip ViT: (config JSON path, state-dict checkpoint path)."""
    import open_clip

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / f"{CLIP_NAME}.json"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2))
    open_clip.add_model_config(config_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(CLIP_NAME, pretrained=None)
    checkpoint_path = folder / f"{CLIP_NAME}.pt"
    torch.save(model.state_dict(), checkpoint_path)
    return config_path, checkpoint_path
