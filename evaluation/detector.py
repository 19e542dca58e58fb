"""An open-vocabulary detector for GenEval's and T2I-CompBench's box checks: OWLv2 (or OWL-ViT)
through transformers, queried with the prompt's own object names.

GenEval runs Mask2Former over COCO's 80 classes and keeps each class's boxes; here the queries
are the prompt's objects only (an open-vocabulary detector needs no fixed label set), each box
goes to its best query, and rules.detections_by_class applies the threshold, the cap per class
and NMS.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from .rules import detections_by_class, detector_queries


class Detector:
    def __init__(self, path: str, device: str = "cpu"):
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.device = device
        self.processor = AutoProcessor.from_pretrained(path)
        self.model = AutoModelForZeroShotObjectDetection.from_pretrained(path).to(device).eval()

    @torch.no_grad()
    def raw(self, image, names: Sequence[str]) -> tuple:
        """(boxes [n, 4] in image pixels, scores [n], labels [n]): every proposal, its best query."""
        inputs = self.processor(text=[detector_queries(names)], images=[image.convert("RGB")],
                                return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs, threshold=0.0, target_sizes=[(image.height, image.width)])[0]
        return result["boxes"].cpu().numpy(), result["scores"].cpu().numpy(), result["labels"].cpu().numpy()

    def detect(self, image, names: Sequence[str], thresholds: Sequence[float], max_objects: int,
               nms_iou: float) -> List[Dict[str, List[list]]]:
        """One {class: boxes} per threshold (GenEval's object and counting thresholds share one pass)."""
        names = list(dict.fromkeys(names))
        boxes, scores, labels = self.raw(image, names)
        return [detections_by_class(boxes, scores, labels, names, t, max_objects, nms_iou) for t in thresholds]
