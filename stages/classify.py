"""Image classifiers: any transformers image-classification model (AutoModelForImageClassification with
its AutoImageProcessor), one label's probability stored as a float32 column, e.g. nsfw_score from
Falconsai/nsfw_image_detection's "nsfw", or watermark_score from a watermark detector.

A job lists several (`classifiers:`), each its own actor pool. The classifier sees decode's model image
(short side decode.model_side) through the model's own processor, as its model card runs it. A
single-label model's probabilities are its softmax; a multi-label one's (problem_type
multi_label_classification) each label's sigmoid. A row rejected upstream passes through with a null
score; an image the model fails on becomes a `classify_error` reject row.
"""
from __future__ import annotations

import numpy as np
import torch

from pixcap.schemas import batch as B
from pixcap.schemas import rejects as R
from pixcap.schemas.stages import ClassifierConfig

from .outcomes import RowOutcomes, error_text, in_chunks

STAGE = "classifiers"


def label_index(id2label: dict, label: str) -> int:
    """The index of `label` among a model's labels (exact, else the one label equal ignoring case);
    ValueError naming the model's labels."""
    labels = {int(i): str(name) for i, name in id2label.items()}
    exact = [i for i, name in labels.items() if name == label]
    folded = [i for i, name in labels.items() if name.lower() == label.lower()]
    if len(exact) == 1 or len(folded) == 1:
        return (exact or folded)[0]
    raise ValueError(f"label {label!r} is not one of the model's labels: {', '.join(labels[i] for i in sorted(labels))}")


def check_classifier(config: ClassifierConfig) -> str:
    """The job's label against the model's config (no weights loaded): an error line, or ""."""
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(config.model, trust_remote_code=config.trust_remote_code)
        label_index(model_config.id2label, config.label)
    except Exception as e:  # noqa: BLE001 (an unreadable config, a missing label: one line either way)
        return f"classifiers ({config.column}): {config.model}: {error_text(e)}"
    return ""


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Each label's probability: sigmoid for a multi-label model, else softmax over the labels (in float32)."""
    logits = logits.float()
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


class ClassifierStage:
    """Adds config.column: the probability of config.label, in batches of config.batch_size."""

    def __init__(self, config: ClassifierConfig):
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.config, self.stage = config, f"{STAGE}.{config.column}"  # its reject rows' stage: the instance
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        # A model folder's own python runs only if the job says so; weights load as tensors only.
        self.processor = AutoImageProcessor.from_pretrained(config.model, trust_remote_code=config.trust_remote_code)
        self.model = AutoModelForImageClassification.from_pretrained(
            config.model, trust_remote_code=config.trust_remote_code, weights_only=True).to(self.device).eval()
        self.index = label_index(self.model.config.id2label, config.label)
        self.multi_label = self.model.config.problem_type == "multi_label_classification"

    @torch.inference_mode()
    def score(self, images: list) -> np.ndarray:
        """The label's probability for each HxWx3 uint8 image."""
        inputs = self.processor(images=[np.asarray(image, dtype=np.uint8) for image in images], return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.model.dtype)
        logits = self.model(pixel_values=pixels).logits
        return probabilities(logits, self.multi_label)[:, self.index].cpu().numpy().astype(np.float32)

    def __call__(self, batch: dict) -> dict:
        rows = RowOutcomes(batch, self.stage)
        images = batch[B.MODEL_IMAGE]
        scores = np.full(len(rows), np.nan, dtype=np.float32)

        def run(chunk: list) -> None:
            scores[chunk] = self.score([images[i] for i in chunk])

        in_chunks(rows.live_rows(), self.config.batch_size, run,
                  lambda i, e: rows.reject(i, R.CLASSIFY_ERROR, error_text(e)))
        return {**batch, self.config.column: scores, **rows.columns()}
