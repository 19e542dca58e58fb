"""T5 tokens: each caption's exact length in the text encoder's tokens, and whether the trainer cuts it.

PixArt-alpha encodes a caption with T5 at max_length 120 and drops the rest; the count (the T5
tokenizer's ids, </s> included, as analysis/caption_length.py counts them) says how much of each
caption training sees. Optional: on when t5_tokens.tokenizer names a tokenizer. With several
captioners each caption gets its own (t5_tokens_long, t5_truncated_long), and the base columns are
the primary's. Adds no reject: a rejected row passes through with nulls.
"""
from __future__ import annotations

from pixcap.schemas import batch as B
from pixcap.schemas.records import CAPTION, T5_TOKENS, T5_TRUNCATED, captioner_column
from pixcap.schemas.stages import T5TokensConfig


class T5TokensStage:
    def __init__(self, config: T5TokensConfig, captioners=("",)):
        from transformers import AutoTokenizer

        self.config = config
        self.captioners = list(captioners)
        self.tokenizer = AutoTokenizer.from_pretrained(config.tokenizer)

    def counts(self, captions: list) -> list:
        ids = self.tokenizer(list(captions), add_special_tokens=True)["input_ids"]
        return [len(row) for row in ids]

    def __call__(self, batch: dict) -> dict:
        out = dict(batch)
        live = [i for i, reason in enumerate(batch[B.REJECT_REASON]) if not reason]
        for name in self.captioners:
            captions = batch[captioner_column(CAPTION, name)]
            counts = [0] * len(captions)  # a rejected row's 0 is never written (write strips its data)
            for i, count in zip(live, self.counts([captions[i] or "" for i in live])):
                counts[i] = count
            truncated = [count > self.config.max_length for count in counts]
            for target in ([name, ""] if name and name == self.captioners[0] else [name]):
                out[captioner_column(T5_TOKENS, target)] = counts
                out[captioner_column(T5_TRUNCATED, target)] = truncated
        return out
