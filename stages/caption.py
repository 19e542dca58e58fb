"""Captions: LLaVA through transformers (backend hf), or the captions found beside the images (sidecar).

Both add the `caption` and `caption_model` columns. A row rejected upstream passes through with
an empty caption; an image the captioner fails on becomes a `caption_error` reject row.
"""
from __future__ import annotations

import torch

from pixcap.schemas import batch as cols
from pixcap.schemas.job import CaptionConfig

CAPTION = "caption"
CAPTION_MODEL = "caption_model"
SIDECAR_MODEL = "sidecar"  # caption_model of captions taken from KEY.txt files
STAGE = "caption"


def error_text(error: Exception) -> str:
    """One line for the rejects table."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:500]


def chat_prompt(processor, prompt: str) -> str:
    """The model's own chat template around one image and the prompt, ready for the answer."""
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True)


@torch.inference_mode()
def generate_captions(model, processor, images: list, prompts: list, max_new_tokens: int) -> list:
    """Greedy captions for images, one chat prompt each, in one left-padded batch.

    Left padding keeps every prompt's last token at the end of the row, where generation
    continues; so an image gets the same caption alone as beside longer prompts.
    """
    inputs = processor(images=images, text=prompts, padding=True, padding_side="left", return_tensors="pt")
    inputs = inputs.to(model.device, dtype=model.dtype)  # casts pixel_values only, never the ids
    output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    return [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]


class _RowResults:
    """The columns a caption stage adds, plus the reject columns it may extend."""

    def __init__(self, batch: dict):
        self.batch = batch
        self.stage = list(batch[cols.REJECT_STAGE])
        self.reason = list(batch[cols.REJECT_REASON])
        self.error = list(batch[cols.REJECT_ERROR])
        self.caption = [""] * len(self.reason)
        self.model = [""] * len(self.reason)

    def live_rows(self) -> list:
        return [i for i, reason in enumerate(self.reason) if not reason]

    def accept(self, i: int, caption: str, model_name: str):
        self.caption[i], self.model[i] = caption, model_name

    def reject(self, i: int, reason: str, error: str = ""):
        self.stage[i], self.reason[i], self.error[i] = STAGE, reason, error

    def batch_out(self) -> dict:
        out = dict(self.batch)
        out[cols.REJECT_STAGE], out[cols.REJECT_REASON], out[cols.REJECT_ERROR] = self.stage, self.reason, self.error
        out[CAPTION], out[CAPTION_MODEL] = self.caption, self.model
        return out


class CaptionStage:
    """LLaVA captions, greedy, in left-padded mini-batches of config.batch_size."""

    def __init__(self, config: CaptionConfig):
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        self.config = config
        cuda = torch.cuda.is_available()
        # bf16 + SDPA is how the 7B model fits and runs fast on a GPU; CPU bf16 is slow and lossy.
        extra = {"dtype": torch.bfloat16, "attn_implementation": "sdpa"} if cuda else {"dtype": torch.float32}
        # A model folder's auto_map names python files in it; they run only if the job sets
        # caption.trust_remote_code. Weights load as tensors only: a pickled .bin cannot run code.
        self.processor = AutoProcessor.from_pretrained(config.model, trust_remote_code=config.trust_remote_code)
        self.model = LlavaForConditionalGeneration.from_pretrained(
            config.model, trust_remote_code=config.trust_remote_code, weights_only=True, **extra
        ).to("cuda" if cuda else "cpu").eval()
        self.prompt = chat_prompt(self.processor, config.prompt)

    def caption(self, images: list) -> list:
        return generate_captions(self.model, self.processor, images, [self.prompt] * len(images),
                                 self.config.max_new_tokens)

    def __call__(self, batch: dict) -> dict:
        rows = _RowResults(batch)
        images = batch[cols.MODEL_IMAGE]
        live = rows.live_rows()
        size = self.config.batch_size
        for start in range(0, len(live), size):
            chunk = live[start:start + size]
            try:
                captions = self.caption([images[i] for i in chunk])
            except Exception:  # one bad image must not cost its neighbours: retry them alone
                self._caption_one_by_one(chunk, images, rows)
            else:
                for i, text in zip(chunk, captions):
                    rows.accept(i, text, self.config.model)
        return rows.batch_out()

    def _caption_one_by_one(self, chunk: list, images, rows: _RowResults):
        for i in chunk:
            try:
                rows.accept(i, self.caption([images[i]])[0], self.config.model)
            except Exception as e:
                rows.reject(i, "caption_error", error_text(e))


class SidecarCaptionStage:
    """Captions from the KEY.txt files the read stage found; an image without one is rejected."""

    def __init__(self, config: CaptionConfig):
        self.config = config

    def __call__(self, batch: dict) -> dict:
        rows = _RowResults(batch)
        sidecars = batch[cols.SIDECAR_CAPTION]
        for i in rows.live_rows():
            text = (sidecars[i] or "").strip()
            if text:
                rows.accept(i, text, SIDECAR_MODEL)
            else:
                rows.reject(i, "no_caption")
        return rows.batch_out()
