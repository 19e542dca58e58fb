"""The scoring rules, as pure functions over model outputs (boxes, scores, probabilities,
embeddings): each benchmark's published method, written here, with no model in sight.

GenEval (Ghosh et al. 2023, evaluation/evaluate_images.py): objects are detected above a
threshold, at most 16 a class, most confident first; an object is present when it is found at
least `count` times, a count is right when it is found exactly `count` times (at a stricter
threshold), colour is CLIP's zero-shot choice among ten colours on each object's crop, and a
position is read from the box centres, offset by a share of the boxes' sizes.

T2I-CompBench (Huang et al. 2023): attribute binding is the product over the prompt's noun
phrases of BLIP-VQA's P(yes) for "<phrase>?", that is p(yes) / (p(yes) + p(no)) of the answer's
first token; 2D spatial is judged from the box centres and their IoU (UniDet_eval).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from pixcap.schemas import evaluation as e

# A detection: [x0, y0, x1, y1, score], pixel coordinates, y pointing down.
Detection = Sequence[float]


def box_iou(a: Detection, b: Detection) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detections_by_class(boxes, scores, labels, class_names: Sequence[str], threshold: float,
                        max_objects: int = 16, nms_iou: float = 0.5) -> Dict[str, List[list]]:
    """{class: [[x0, y0, x1, y1, score], ...]} most confident first: above `threshold`, at most
    `max_objects` a class, and a box overlapping a kept one of its class by more than `nms_iou`
    dropped (OWL-style detectors propose one box per patch; nms_iou 1 keeps all, as GenEval's
    Mask2Former setting does)."""
    found: Dict[str, List[list]] = {}
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    for i in order:
        score = float(scores[i])
        if score <= threshold:
            break
        name = class_names[int(labels[i])]
        kept = found.setdefault(name, [])
        box = [float(v) for v in boxes[i][:4]] + [score]
        if len(kept) < max_objects and (nms_iou >= 1 or all(box_iou(box, k) <= nms_iou for k in kept)):
            kept.append(box)
    return found


def relative_position(a: Detection, b: Detection, threshold: float = 0.1) -> set:
    """GenEval: where box a lies relative to box b, as a set of 'left of', 'right of', 'above', 'below'.
    The centres' offset, shrunk on each axis by threshold x (both boxes' sizes), must keep more than
    half of the offset's length along an axis for that axis's relation to hold."""
    ca = np.array([(a[0] + a[2]) / 2, (a[1] + a[3]) / 2])
    cb = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
    size = np.array([abs(a[2] - a[0]) + abs(b[2] - b[0]), abs(a[3] - a[1]) + abs(b[3] - b[1])])
    offset = ca - cb
    revised = np.maximum(np.abs(offset) - threshold * size, 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def geneval_checks(prompt: dict, found: Dict[str, List[list]], colours: Dict[int, List[str]],
                   position_threshold: float = 0.1, counting_found: Optional[Dict[str, List[list]]] = None) -> dict:
    """GenEval's verdict on one image: {"object", "counting", "colour", "position", "geneval"}, each
    True, False, or None where the prompt does not ask it.

    found: detections at the object threshold; counting_found: at the counting threshold (the
    counting task's detections, as GenEval switches threshold by task); colours: object index ->
    the colours CLIP gave the crops of its `count` most confident boxes."""
    category = prompt[e.PROMPT_CATEGORY]
    objects = prompt[e.PROMPT_OBJECTS]
    counting = category == e.COUNTING
    detections = counting_found if counting and counting_found is not None else found
    top = [detections.get(o[e.OBJECT_NAME], [])[: o[e.OBJECT_COUNT]] for o in objects]
    present = [len(t) >= o[e.OBJECT_COUNT] for t, o in zip(top, objects)]
    result = {"object": all(present), "counting": None, "colour": None, "position": None}
    if counting:
        result["counting"] = all(p and len(detections.get(o[e.OBJECT_NAME], [])) < o[e.OBJECT_COUNT] + 1
                                 for p, o in zip(present, objects))
    asked = [i for i, o in enumerate(objects) if o.get(e.OBJECT_COLOUR)]
    if asked:
        result["colour"] = all(present[i] and colours.get(i, []).count(objects[i][e.OBJECT_COLOUR]) >= objects[i][e.OBJECT_COUNT]
                               for i in asked)
    relation = prompt.get(e.PROMPT_RELATION)
    if relation:
        s, o = relation[e.RELATION_SUBJECT], relation[e.RELATION_OBJECT]
        result["position"] = bool(present[s] and present[o] and all(
            relation[e.RELATION_NAME] in relative_position(a, b, position_threshold) for a in top[s] for b in top[o]))
    result["geneval"] = all(v for v in result.values() if v is not None)
    return result


def compbench_position(relation: str, subject: Detection, obj: Detection, iou_threshold: float = 0.1) -> float:
    """T2I-CompBench's 2D score for 'subject <relation> obj' (UniDet_eval's determine_position):
    1 when the centres are apart mostly along the relation's axis, in its direction, and the boxes
    overlap by an IoU under 0.1; iou_threshold / IoU when they overlap more; else 0."""
    dx = (obj[0] + obj[2]) / 2 - (subject[0] + subject[2]) / 2
    dy = (obj[1] + obj[3]) / 2 - (subject[1] + subject[3]) / 2
    along, across, direction = {"left of": (dx, dy, 1), "right of": (dx, dy, -1),
                                "above": (dy, dx, 1), "below": (dy, dx, -1)}[relation]
    if along * direction <= 0 or abs(along) <= abs(across):
        return 0.0
    iou = box_iou(subject, obj)
    return 1.0 if iou < iou_threshold else iou_threshold / iou


def compbench_spatial(prompt: dict, found: Dict[str, List[list]]) -> float:
    """T2I-CompBench's per-image 2D spatial score: a quarter of each detected object's confidence
    plus half the position score, set to 0 below 0.5 (so both objects must be found)."""
    relation = prompt[e.PROMPT_RELATION]
    objects = prompt[e.PROMPT_OBJECTS]
    first = found.get(objects[relation[e.RELATION_SUBJECT]][e.OBJECT_NAME], [])
    second = found.get(objects[relation[e.RELATION_OBJECT]][e.OBJECT_NAME], [])
    score = 0.0
    if first and second:
        a, b = first[0], second[0]
        score = 0.25 * a[4] + 0.25 * b[4] + compbench_position(relation[e.RELATION_NAME], a, b) / 2
    elif first or second:
        score = 0.25 * (first or second)[0][4]
    return score if score >= 0.5 else 0.0


def p_yes(first_token_logits: np.ndarray, yes_id: int, no_id: int) -> float:
    """T2I-CompBench's vqa_prob: the softmax of the answer's first token, renormalised over yes and no."""
    logits = np.asarray(first_token_logits, dtype=np.float64)
    # softmax over the vocabulary, then the two entries: the shared normaliser cancels
    return float(1.0 / (1.0 + math.exp(logits[no_id] - logits[yes_id])))


def binding_score(probabilities: Sequence[float]) -> float:
    """The product of P(yes) over the prompt's noun phrases (1 for none, as T2I-CompBench's empty questions)."""
    return float(np.prod(np.asarray(probabilities, dtype=np.float64))) if len(probabilities) else 1.0


def zero_shot_weights(text_embeddings: np.ndarray) -> np.ndarray:
    """clip_benchmark's zero-shot classifier: per class, the mean of its templates' normalised text
    embeddings, normalised. text_embeddings: [classes, templates, dim] -> [classes, dim]."""
    t = text_embeddings / np.linalg.norm(text_embeddings, axis=-1, keepdims=True)
    mean = t.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def classify(image_embeddings: np.ndarray, weights: np.ndarray, names: Sequence[str]) -> List[str]:
    """The class whose weights are closest (cosine) to each normalised image embedding."""
    x = image_embeddings / np.linalg.norm(image_embeddings, axis=-1, keepdims=True)
    return [names[i] for i in np.argmax(x @ weights.T, axis=1)]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity (CLIP score as the dataset's clip_score column is: no 100x, no clip at 0)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(axis=-1)


def colour_templates(name: str) -> List[str]:
    """GenEval's three templates for the colour of a `name`."""
    return [f"a photo of a {{c}} {name}", f"a photo of a {{c}}-colored {name}", "a photo of a {c} object"]


def detector_queries(names: Sequence[str]) -> List[str]:
    """OWL-ViT's text queries: 'a photo of a <class>'."""
    return [f"a photo of a {n}" for n in names]

