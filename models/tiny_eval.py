"""Tiny, seeded, randomly initialised scoring models of `pixcap eval`, in the real formats.

- `tiny:vqa`: BlipForQuestionAnswering + BlipProcessor (save_pretrained), loaded like
  Salesforce/blip-vqa-base;
- `tiny:detector`: Owlv2ForObjectDetection + Owlv2Processor, loaded like
  google/owlv2-base-patch16-ensemble;
- `tiny:inception`: a state dict of torch-fidelity's FID InceptionV3, the file format of
  weights-inception-2015-12-05-6726825d.pth (the architecture is fixed, so it is full size:
  random weights stored as float16, 48 MB).

Their tokenizers know the prompt sets' words (schemas/evaluation.py), so no prompt word is unknown.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from pixcap.schemas.evaluation import (
    CLASSIFIER_COLOURS, COCO_CLASSES, COUNT_WORDS, POSITIONS, PROMPT_COLOURS, SHAPES, TEXTURES,
)

from .tiny import INCEPTION_FILE

# Words of the prompt templates and of the questions and queries the scorers ask.
EXTRA_WORDS = "a an the photo of and yes no on in with is are there object colored".split()


def prompt_words() -> list:
    words = set(EXTRA_WORDS)
    for phrase in (*COCO_CLASSES, *PROMPT_COLOURS, *CLASSIFIER_COLOURS, *POSITIONS, *SHAPES, *TEXTURES,
                   *COUNT_WORDS.values()):
        words.update(phrase.split())
    return sorted(words)


def build_tiny_vqa(path, seed: int = 0) -> Path:
    """A ~200k-parameter BLIP VQA (32 px ViT, 2-layer BERT encoder and decoder) with its processor."""
    from transformers import (
        BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor,
    )

    folder = Path(path)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]
    vocab = {token: i for i, token in enumerate(specials + prompt_words() + list("?.,-'"))}
    # BLIP's tokenizer is BERT's with [DEC] as its bos token (the decoder's start) and [ENC].
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]", extra_special_tokens={"enc_token": "[ENC]"})
    config = BlipConfig(
        text_config=_tower(vocab_size=len(vocab), max_position_embeddings=64, pad_token_id=vocab["[PAD]"],
                           bos_token_id=vocab["[DEC]"], sep_token_id=vocab["[SEP]"]),
        vision_config=_tower(image_size=32, patch_size=8), projection_dim=32)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    return _saved(folder, seed, BlipForQuestionAnswering, config, processor)


def _saved(folder: Path, seed: int, model_class, config, processor) -> Path:
    """The model, randomly initialised from the seed, and its processor, saved as from_pretrained loads them."""
    torch.manual_seed(seed)
    model_class(config).eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _tower(**extra) -> dict:
    """The config of a tiny transformer tower (text or vision): 2 layers of width 32, 2 heads."""
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **extra)


def _word_bpe(words) -> tuple:
    """A CLIP BPE vocabulary and merges in which each word is one token: every character (plain and
    word-final), then each word built left to right."""
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = list(chars) + [c + "</w>" for c in chars]
    merges = []
    for word in words:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        built = parts[0]
        for part in parts[1:]:
            merge = (built, part)
            built = built + part
            if merge not in merges:
                merges.append(merge)
                vocab.append(built)
    vocab = list(dict.fromkeys(vocab)) + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def build_tiny_detector(path, seed: int = 0) -> Path:
    """A tiny OWLv2 (64 px ViT with 16 px patches: 16 boxes; 2-layer text tower) with its processor."""
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    folder = Path(path)
    vocab, merges = _word_bpe(prompt_words())
    # Merges of different words compete, so a word may stay in pieces: 64 positions (OWLv2 has 16)
    # hold any query in characters.
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=64)
    config = Owlv2Config(
        text_config=_tower(vocab_size=len(vocab), max_position_embeddings=64, bos_token_id=vocab["<|startoftext|>"],
                           eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]),
        vision_config=_tower(image_size=64, patch_size=16), projection_dim=32)
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}),
                               tokenizer=tokenizer)
    return _saved(folder, seed, Owlv2ForObjectDetection, config, processor)


def build_tiny_inception(path, seed: int = 0) -> Path:
    """torch-fidelity's FID InceptionV3 with random weights, saved as its weights file is (a state dict)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # nothing to load: random weights
            return None

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.pth"
    torch.save({}, empty)
    torch.manual_seed(seed)
    model = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    empty.unlink()
    # Random convolutions shrink the signal layer by layer (pool features near 1e-8); batch norm's
    # running statistics from one pass over noise images keep each layer's output near unit scale.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randint(0, 256, (4, 3, 299, 299), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)))
    model.eval()
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    weights = folder / INCEPTION_FILE
    torch.save(state, weights)
    (folder / "config.json").write_text(json.dumps({"format": "torch-fidelity inception-v3-compat state dict"}))
    return weights

