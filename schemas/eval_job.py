"""The eval job: every setting `pixcap eval` accepts (`--set key=value`, or a YAML file), with its
default. Defaults are the benchmarks' own models and thresholds; tests name the tiny:* models.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .job import JobError, build_dataclass, check_values
from .models import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, DEFAULT_MODELS_CACHE

DEFAULT_VQA_MODEL = "Salesforce/blip-vqa-base"  # T2I-CompBench's BLIP-VQA, as transformers loads it
DEFAULT_DETECTOR = "google/owlv2-base-patch16-ensemble"
# torchmetrics' and torch-fidelity's FID Inception (the TF 2015-12-05 graph), which is downloaded
# nowhere here: give its path with --set fid.inception=PATH.
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


@dataclass
class ClipEvalConfig:
    model: str = DEFAULT_CLIP_MODEL  # CLIP score, colour on crops, CLIP-FID
    pretrained: str = DEFAULT_CLIP_PRETRAINED


@dataclass
class VqaConfig:
    model: str = DEFAULT_VQA_MODEL


@dataclass
class DetectorConfig:
    model: str = DEFAULT_DETECTOR
    # GenEval's thresholds are Mask2Former's (0.3, 0.9 for counting); OWLv2's sigmoid scores run
    # lower, so its own usual 0.1 and a stricter one for counting.
    threshold: float = 0.1
    counting_threshold: float = 0.3
    max_objects: int = 16  # per class, as GenEval
    nms_iou: float = 0.5  # OWLv2 proposes a box per patch: overlapping boxes of one class are one object
    position_threshold: float = 0.1  # GenEval: centres must be apart by this share of the boxes' sizes


@dataclass
class FidConfig:
    inception: str = ""  # path to the FID Inception weights; empty: no Inception FID (CLIP-FID still runs)
    max_reference: int = 10000  # reference images read at most


@dataclass
class EvalJob:
    images_per_prompt: int = 4  # GenEval's 4
    steps: int = 20
    guidance_scale: float = 4.5
    height: int = 0  # 0: the model's own size
    width: int = 0
    seed: int = 0  # every image's seed derives from it, the prompt id and the image index
    batch_size: int = 4  # images generated and scored together, and committed together
    models_cache: str = DEFAULT_MODELS_CACHE
    prompts_per_category: int = 0  # built-in sets: cap per category; 0 = all the templates make
    clip: ClipEvalConfig = field(default_factory=ClipEvalConfig)
    vqa: VqaConfig = field(default_factory=VqaConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    fid: FidConfig = field(default_factory=FidConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


POSITIVE = ("images_per_prompt", "steps", "batch_size", "detector.max_objects", "fid.max_reference")
NON_NEGATIVE = ("height", "width", "prompts_per_category", "guidance_scale", "detector.threshold",
                "detector.counting_threshold", "detector.position_threshold")


def load_eval_job(data: dict) -> EvalJob:
    job = build_dataclass(EvalJob, data or {}, "")
    check_values(job, {}, POSITIVE, NON_NEGATIVE)
    if job.height % 8 or job.width % 8:
        raise JobError(f"height, width: must be multiples of 8 (the VAE's factor), got {job.height}x{job.width}")
    if not 0 < job.detector.nms_iou <= 1:
        raise JobError(f"detector.nms_iou: must be in (0, 1], got {job.detector.nms_iou}")
    return job
