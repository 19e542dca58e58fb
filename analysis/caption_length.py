"""Caption length in words and in T5 tokens, a batch of captions at a time.

PixArt-alpha's text encoder reads 120 T5 tokens and drops the rest, so the share of captions
longer than that is what a long-caption model costs in lost words. With a T5 tokenizer (a folder
that transformers' AutoTokenizer loads, or a PixArt pipeline with a tokenizer/ subfolder) the
count is T5's own, </s> included. Without one it is an approximation, and the report says so.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

T5_MAX_TOKENS = 120  # PixArt-alpha's T5 max_length (trainer/text.py uses the same number)

# The approximation without a tokenizer: T5's SentencePiece splits English into about 1.3 pieces a
# whitespace word (rare words and punctuation into several, common words into one), plus </s>.
# A rule of thumb for SentencePiece and BPE vocabularies of ~32k on English prose, not a measurement.
APPROX_TOKENS_PER_WORD = 1.3
APPROXIMATION = (f"approximated as round({APPROX_TOKENS_PER_WORD} x words) + 1 for </s>; "
                 "pass --t5-tokenizer for T5's exact count")


def caption_words(captions: pa.Array) -> np.ndarray:
    """Whitespace-separated words of each caption; a null caption has 0."""
    words = pc.list_value_length(pc.utf8_split_whitespace(captions))
    return words.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def approximate_t5_tokens(words: np.ndarray) -> np.ndarray:
    return np.rint(words * APPROX_TOKENS_PER_WORD).astype(np.int64) + 1


class T5TokenCounter:
    """Counts each caption's T5 tokens with a real tokenizer, untruncated, </s> included."""

    def __init__(self, path: str) -> None:
        from transformers import AutoTokenizer  # heavy: only when a tokenizer is asked for

        subfolder = os.path.join(path, "tokenizer")
        self.tokenizer = AutoTokenizer.from_pretrained(subfolder if os.path.isdir(subfolder) else path)
        self.name = path

    def count(self, captions: pa.Array) -> np.ndarray:
        texts = [text or "" for text in captions.to_pylist()]
        ids = self.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


def t5_tokens(captions: pa.Array, words: np.ndarray, counter: Optional[T5TokenCounter]) -> np.ndarray:
    """T5 tokens of each caption: the tokenizer's count when one is given, else the approximation."""
    return counter.count(captions) if counter is not None else approximate_t5_tokens(words)
