"""Every score of one batch of generated images, from the eval's scoring models.

A model is loaded on first need only: BLIP for attribute-binding prompts, the detector for
GenEval's and the 2D spatial prompts, the Inception when fid.inception is set. The rules that turn
their outputs into scores are rules.py's pure functions.
"""
from __future__ import annotations

import json
from typing import List, Optional, Sequence

import numpy as np
from PIL import Image

from pixcap.models.resolve import resolve_model
from pixcap.schemas import evaluation as e
from pixcap.schemas.eval_job import EvalJob

from . import rules
from .clip_scorer import ClipScorer
from .vqa import phrases_of

FID_SIDE = 299  # Inception's input: images are resized to it with PIL's bicubic, as clean-fid does


def fid_view(image) -> Image.Image:
    return image.convert("RGB").resize((FID_SIDE, FID_SIDE), Image.BICUBIC)


class Scorers:
    def __init__(self, job: EvalJob, device: str = "cpu"):
        self.job, self.device = job, device
        cache = job.models_cache
        self.clip = ClipScorer(resolve_model("clip.model", job.clip.model, cache),
                               resolve_model("clip.pretrained", job.clip.pretrained, cache, checkpoint=True), device)
        self._vqa = self._detector = self._inception = None

    @property
    def vqa(self):
        if self._vqa is None:
            from .vqa import VqaScorer

            self._vqa = VqaScorer(resolve_model("vqa.model", self.job.vqa.model, self.job.models_cache), self.device)
        return self._vqa

    @property
    def detector(self):
        if self._detector is None:
            from .detector import Detector

            self._detector = Detector(resolve_model("detector.model", self.job.detector.model, self.job.models_cache),
                                      self.device)
        return self._detector

    @property
    def inception(self):
        if self._inception is None and self.job.fid.inception:
            from .inception import InceptionFeatures

            self._inception = InceptionFeatures(
                resolve_model("fid.inception", self.job.fid.inception, self.job.models_cache), self.device)
        return self._inception

    def fid_features(self, images: Sequence) -> Optional[np.ndarray]:
        return None if self.inception is None else self.inception.features([fid_view(im) for im in images])

    def _boxes(self, prompt: dict, image) -> dict:
        """GenEval's checks and T2I-CompBench's 2D score from one detector pass."""
        d = self.job.detector
        objects = prompt[e.PROMPT_OBJECTS]
        found, counting_found = self.detector.detect(image, [o[e.OBJECT_NAME] for o in objects],
                                                     [d.threshold, d.counting_threshold], d.max_objects, d.nms_iou)
        out = {"detections": json.dumps(found, sort_keys=True)}
        category = prompt[e.PROMPT_CATEGORY]
        if category == e.SPATIAL:
            out["spatial"] = rules.compbench_spatial(prompt, found)
            return out
        colours = {}
        for i, obj in enumerate(objects):
            if obj.get(e.OBJECT_COLOUR):
                boxes = found.get(obj[e.OBJECT_NAME], [])[: obj[e.OBJECT_COUNT]]
                colours[i] = self.clip.crop_colours(image, obj[e.OBJECT_NAME], boxes)
        out.update(rules.geneval_checks(prompt, found, colours, d.position_threshold, counting_found))
        return out

    def score_batch(self, prompts: List[dict], images: List) -> tuple:
        """(score rows without the identity columns, CLIP image embeddings [n, d])."""
        image_emb = self.clip.image_embeddings(images)
        text_emb = self.clip.text_embeddings([p[e.PROMPT_TEXT] for p in prompts])
        clip_scores = rules.cosine(image_emb, text_emb)
        rows = []
        for prompt, image, clip_score in zip(prompts, images, clip_scores):
            row = {name: None for name in e.SCORE_METRICS}
            row["detections"] = None
            row["clip_score"] = float(clip_score)
            category = prompt[e.PROMPT_CATEGORY]
            if category in e.BINDING_CATEGORIES:
                row["attribute_binding"] = rules.binding_score(
                    self.vqa.probabilities(image, phrases_of(prompt[e.PROMPT_OBJECTS])))
            if category in e.GENEVAL_CATEGORIES or category == e.SPATIAL:
                row.update(self._boxes(prompt, image))
            rows.append(row)
        return rows, image_emb
