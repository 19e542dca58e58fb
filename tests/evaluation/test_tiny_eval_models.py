"""The tiny scoring models load through the classes the real weights load through, know every word
of the built-in prompts, and are seeded; a weights file that is not plain tensors is refused."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from pixcap.evaluation.prompts import builtin_prompts
from pixcap.models.resolve import resolve_model
from pixcap.schemas import JobError
from pixcap.schemas.evaluation import BINDING_CATEGORIES
from pixcap.schemas.models import TINY_DETECTOR, TINY_INCEPTION, TINY_VQA


def image(seed=0, size=(96, 64)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_vqa_loads_like_blip_vqa_base_and_knows_the_phrases(models_cache):
    from transformers import AutoProcessor, BlipForQuestionAnswering

    from pixcap.evaluation.vqa import VqaScorer, phrases_of

    path = resolve_model("vqa.model", TINY_VQA, models_cache)
    processor = AutoProcessor.from_pretrained(path)
    model = BlipForQuestionAnswering.from_pretrained(path)
    unk = processor.tokenizer.unk_token_id
    for p in builtin_prompts("builtin"):  # BLIP is asked about the attribute-binding prompts
        if p["category"] in BINDING_CATEGORIES:
            ids = processor.tokenizer(" ".join(phrases_of(p["objects"])) + "?").input_ids
            assert unk not in ids, p["prompt"]
    inputs = processor(images=image(), text="a red car?", return_tensors="pt")
    answer = model.generate(**inputs, max_new_tokens=3)  # transformers' own VQA path runs on it
    assert answer.shape[0] == 1
    probabilities = VqaScorer(path).probabilities(image(), ["a red car", "two dogs"])
    assert len(probabilities) == 2 and all(0 < p < 1 for p in probabilities)


def test_detector_loads_like_owlv2_and_boxes_are_in_pixels(models_cache):
    from transformers import Owlv2ForObjectDetection

    from pixcap.evaluation.detector import Detector

    path = resolve_model("detector.model", TINY_DETECTOR, models_cache)
    assert isinstance(Owlv2ForObjectDetection.from_pretrained(path), Owlv2ForObjectDetection)
    detector = Detector(path)
    for p in builtin_prompts("builtin"):
        queries = detector.processor(text=[[f"a photo of a {o['name']}" for o in p["objects"]]], return_tensors="pt")
        assert queries.input_ids.shape[1] <= 64
    boxes, scores, labels = detector.raw(image(size=(96, 64)), ["dog", "traffic light"])
    assert boxes.shape == (16, 4) and set(labels) <= {0, 1}  # 64 px / 16 px patches: 16 proposals


def test_inception_is_fids_network_and_seeded(models_cache, tmp_path):
    from torchmetrics.image.fid import NoTrainInceptionV3

    from pixcap.evaluation.inception import InceptionFeatures
    from pixcap.models.tiny_eval import build_tiny_inception

    path = resolve_model("fid.inception", TINY_INCEPTION, models_cache)
    net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=path)
    features = InceptionFeatures(path).features([image(0, (299, 299)), image(1, (299, 299))])
    assert features.shape == (2, 2048) and features.std(axis=0).mean() > 1e-3  # not vanishing
    again = build_tiny_inception(tmp_path / "again", seed=0)
    first, second = torch.load(path, weights_only=True), torch.load(again, weights_only=True)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert set(first) == set(net.state_dict())


def test_inception_weights_with_code_are_refused(tmp_path):
    from pixcap.evaluation.inception import InceptionFeatures

    class Payload:
        def __reduce__(self):
            return (print, ("this ran",))

    bad = tmp_path / "bad.pth"
    with open(bad, "wb") as f:
        pickle.dump({"x": Payload()}, f)
    with pytest.raises(JobError, match="not a plain state dict"):
        InceptionFeatures(str(bad))
