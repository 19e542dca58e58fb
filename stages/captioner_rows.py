"""What a captioner reads and writes of a batch, whatever its backend (hf, vllm, sidecar).

A `caption:` job's one captioner writes the base columns (caption, caption_model) and its reject rows
say "caption". A named one of `captioners:` writes its own (caption_long, caption_model_long), and the
primary (first) one the base columns too; its reject rows say "captioners.long". Its prompt may quote
the sample's own caption ({sidecar}) or an earlier captioner's ({long}); a row without the caption it
quotes is rejected (no_caption), never prompted with a hole. A sampled captioner's seed comes from the
sample's key and the captioner's name, so any run, resumed or not, batched as it may be, samples alike.
"""
from __future__ import annotations

import hashlib

import numpy as np

from pixcap.schemas import batch as B
from pixcap.schemas import rejects as R
from pixcap.schemas.records import CAPTION, CAPTION_MODEL, captioner_column
from pixcap.schemas.stages import CAPTION_STAGE, CAPTIONERS_STAGE, QUOTE_SIDECAR, quoted

from .outcomes import RowOutcomes


def sample_seed(name: str, key: str) -> int:
    """A captioner's seed for one sample: 63 bits of sha256(name NUL key), the same in every process."""
    return int.from_bytes(hashlib.sha256(f"{name}\0{key}".encode("utf-8", "surrogatepass")).digest()[:8], "big") >> 1


class CaptionerRows:
    def __init__(self, config, primary: bool = True):
        self.name = getattr(config, "name", "")
        self.primary = primary
        self.stage = f"{CAPTIONERS_STAGE}.{self.name}" if self.name else CAPTION_STAGE
        self.pixels = B.caption_pixels(self.name)
        self.template = config.prompt
        # A `caption:` job's prompt is literal text (it was before captioners could quote).
        self.quotes = quoted(config.prompt) if self.name else []
        self.temperature = float(getattr(config, "temperature", 0.0))
        self.top_p = float(getattr(config, "top_p", 1.0))
        self.view = getattr(config, "view", "crop")

    @property
    def sampled(self) -> bool:
        return self.temperature > 0

    def outcomes(self, batch: dict) -> RowOutcomes:
        return RowOutcomes(batch, self.stage)

    def _quoted_column(self, name: str) -> str:
        return B.SIDECAR_CAPTION if name == QUOTE_SIDECAR else captioner_column(CAPTION, name)

    def prompts(self, batch: dict, rows: RowOutcomes) -> list:
        """The prompt text of each row with its quotes filled in; a live row lacking a quoted caption is
        rejected here (no_caption) and gets ""."""
        prompts = [self.template] * len(rows)
        if not self.quotes:
            return prompts
        columns = {name: batch.get(self._quoted_column(name)) for name in self.quotes}
        for i in rows.live_rows():
            values = {name: ((column[i] if column is not None else "") or "").strip() for name, column in columns.items()}
            missing = [name for name, value in values.items() if not value]
            if missing:
                rows.reject(i, R.NO_CAPTION, f"the prompt quotes {{{missing[0]}}}, which this sample lacks")
                prompts[i] = ""
            else:
                prompts[i] = self.template.format(**values)
        return prompts

    def seeds(self, batch: dict) -> list:
        return [sample_seed(self.name, str(key)) for key in batch[B.KEY]]

    def output(self, batch: dict, rows: RowOutcomes, captions: list, models: list) -> dict:
        """The batch with this captioner's columns added, its crop consumed."""
        out = {k: v for k, v in batch.items() if k != self.pixels}
        out.update(rows.columns())
        captions = ["" if rows.reason[i] else text for i, text in enumerate(captions)]
        models = ["" if rows.reason[i] else model for i, model in enumerate(models)]
        out[captioner_column(CAPTION, self.name)] = captions
        out[captioner_column(CAPTION_MODEL, self.name)] = models
        if self.name and self.primary:
            out[CAPTION], out[CAPTION_MODEL] = list(captions), list(models)
        return out


def as_image(value) -> np.ndarray:
    return np.asarray(value, dtype=np.uint8)
