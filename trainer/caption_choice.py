"""caption_choice: which of a sample's captions the trainer reads, when the pipeline wrote several.

The job's `caption_choice` is one of:
- {} (the default): KEY.txt, the primary caption, as before;
- {captioner: long}: that captioner's KEY.long.txt;
- {proportions: {long: 0.5, short: 0.3, sidecar: 0.2}}: a captioner drawn with these weights, among those
  the sample has (the weights of the others are left out);
- {clip_score: T}: Sana's CLIP-score sampling: captioner i drawn with probability softmax(clip_score_i / T),
  among the sample's captions with a score (KEY.json's clip_score_NAME).
A draw is seeded by the job's seed, the data segment and the sample's id, so a resumed run, which
rebuilds the stream at its segment, draws exactly what the uninterrupted run drew, on any worker count.
"""
from __future__ import annotations

import math
import random

from pixcap.schemas.records import CAPTION_EXT, CLIP_SCORE, caption_member, captioner_column

CAPTIONER, PROPORTIONS, BY_CLIP_SCORE = "captioner", "proportions", "clip_score"


def _present(sample: dict, names) -> list:
    return [name for name in names if caption_member(name) in sample]


def _draw(rng: random.Random, names: list, weights: list) -> str:
    return rng.choices(names, weights=weights, k=1)[0]


def choose_caption(sample: dict, record: dict, choice: dict, rng: random.Random):
    """(captioner name, caption text), or None when the sample has none of the captions asked for."""
    if CAPTIONER in choice:
        names = _present(sample, [choice[CAPTIONER]])
    elif PROPORTIONS in choice:
        weights = choice[PROPORTIONS]
        names = [name for name in _present(sample, weights) if weights[name] > 0]
        names = [_draw(rng, names, [weights[name] for name in names])] if names else []
    else:
        temperature = float(choice[BY_CLIP_SCORE])
        scored = [(name, record.get(captioner_column(CLIP_SCORE, name))) for name in named_captions(sample)]
        scored = [(name, score) for name, score in scored if isinstance(score, (int, float)) and math.isfinite(score)]
        if scored:
            top = max(score for _, score in scored)  # softmax, shifted for exp's range
            names = [_draw(rng, [n for n, _ in scored], [math.exp((s - top) / temperature) for _, s in scored])]
        else:
            names = []
    if not names:
        return None
    return names[0], sample[caption_member(names[0])].decode("utf-8")


def named_captions(sample: dict) -> list:
    """The captioners whose KEY.NAME.txt the sample holds, in name order (KEY.txt is the primary's copy)."""
    suffix = "." + CAPTION_EXT
    return sorted(key[:-len(suffix)] for key in sample if key.endswith(suffix) and key != CAPTION_EXT and
                  "." not in key[:-len(suffix)])


def choice_rng(seed: int, segment: int, url, key: str) -> random.Random:
    """The draw's generator for one sample: the job's seed, the segment, the shard's URL and the sample's key."""
    return random.Random(f"pixcap-caption-{seed}-{segment}-{url}-{key}")
