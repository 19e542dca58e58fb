"""Aesthetic score: LAION's improved aesthetic predictor (models/aesthetic_mlp.py) on the CLIP
image embedding the clip stage stored, as PixArt-alpha's stage 3 filters for high-aesthetic data.

Optional: runs after clip when the job names weights. It reads the embedding and does not
consume it (the commit stores it). A row without an embedding (rejected earlier, or not scored
by CLIP) passes through with no score.
"""
from __future__ import annotations

import numpy as np
import torch

from pixcap.models.aesthetic_mlp import load_aesthetic_mlp
from pixcap.schemas import batch as B
from pixcap.schemas.stages import AestheticConfig
from pixcap.schemas import rejects as R
from pixcap.schemas.records import AESTHETIC_SCORE

from .outcomes import RowOutcomes, error_text, in_chunks

STAGE = "aesthetic"


class AestheticStage:
    """Adds AESTHETIC_SCORE (float32, NaN where there is no embedding), batch_size rows per forward pass.

    The shape of every head on the stored CLIP embedding: a subclass names its loader, column, stage and
    reject reason (stages/clip_nsfw.py)."""
    STAGE, COLUMN, REJECT, WHAT = STAGE, AESTHETIC_SCORE, R.AESTHETIC_ERROR, "the aesthetic predictor"
    load = staticmethod(load_aesthetic_mlp)

    def __init__(self, config: AestheticConfig):
        self.model = self.load(config.model)  # once per actor; config.model is a resolved path
        self.batch_size = config.batch_size

    def _check_width(self, vectors: np.ndarray) -> None:
        if vectors.shape[1] != self.model.input_size:
            # Every row would be wrong, not one: a job pairing weights with another CLIP stops here.
            raise ValueError(f"{self.WHAT} takes {self.model.input_size}-dim CLIP embeddings; the clip "
                             f"stage gives {vectors.shape[1]}: use the CLIP it was trained on (ViT-L-14, openai)")

    @torch.inference_mode()
    def score(self, vectors: np.ndarray) -> np.ndarray:
        """Scores of (n, d) embeddings, L2-normalised in float32 first, as LAION's predictor was trained."""
        self._check_width(vectors)
        x = torch.from_numpy(vectors.astype(np.float32))
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return np.concatenate([self.model(x[i:i + self.batch_size]).numpy() for i in range(0, len(x), self.batch_size)])

    def __call__(self, batch: dict) -> dict:
        embeddings = batch[B.CLIP_EMBEDDING]
        outcomes = RowOutcomes(batch, self.STAGE)
        rows = [i for i in outcomes.live_rows() if embeddings[i] is not None and len(embeddings[i])]
        scores = np.full(len(embeddings), np.nan, dtype=np.float32)
        if rows:
            vectors = np.stack([np.frombuffer(bytes(embeddings[i]), dtype=np.float16) for i in rows])
            self._check_width(vectors)  # a job pairing weights with another CLIP: every row is wrong, so it stops

            position = {row: n for n, row in enumerate(rows)}

            def run(chunk: list) -> None:
                scores[chunk] = self.score(vectors[[position[i] for i in chunk]])

            in_chunks(rows, self.batch_size, run, lambda i, e: outcomes.reject(i, self.REJECT, error_text(e)))
        return {**batch, self.COLUMN: scores, **outcomes.columns()}
