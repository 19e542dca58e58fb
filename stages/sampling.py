"""Sampling with one seed per sample, inside a batched transformers generate().

transformers samples a whole batch from one global generator, so a sample's caption would depend on
its neighbours in the batch and on the batch boundaries, which a resumed run draws differently.
`SeededSampling` draws each row's next token from that row's own generator (seeded from its key:
captioner_rows.sample_seed) after temperature and top-p, and leaves only that token to greedy
decoding (do_sample=False), so a sample's caption depends on its own seed and logits alone. It runs
after the model's own logits processors (min_new_tokens, no_repeat_ngram_size), as generate() orders
a custom processor list. The draw is made on the CPU in float32, the same on any device.
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """probs (one row) with every token outside the smallest set whose mass reaches top_p zeroed (the
    top token always stays), as the nucleus sampling of Holtzman et al. and transformers' TopPLogitsWarper."""
    if top_p >= 1.0:
        return probs
    ordered, order = torch.sort(probs, descending=True)
    before = torch.cumsum(ordered, 0) - ordered  # mass of the tokens ranked above each one
    ordered[before >= top_p] = 0.0
    return torch.zeros_like(probs).scatter_(0, order, ordered)


class SeededSampling(LogitsProcessor):
    def __init__(self, seeds: list, temperature: float, top_p: float):
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self.temperature, self.top_p = float(temperature), float(top_p)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.detach().float().cpu() / self.temperature
        chosen = []
        for row, generator in zip(logits, self.generators):
            probs = top_p_filter(torch.softmax(row, dim=-1), self.top_p)
            chosen.append(int(torch.multinomial(probs, 1, generator=generator)))
        out = torch.full_like(scores, float("-inf"))
        index = torch.tensor(chosen, device=scores.device).unsqueeze(1)
        return out.scatter_(1, index, 0.0)
