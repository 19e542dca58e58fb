"""The scoring rules on constructed cases whose answers are known by hand."""
import math

import numpy as np
import pytest

from pixcap.evaluation import rules
from pixcap.schemas import evaluation as e


def box(cx, cy, w=10, h=10, score=0.9):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score]


# --- GenEval's relative position -------------------------------------------------------------

def test_left_right_above_below_from_box_centres():
    centre = box(50, 50)
    assert rules.relative_position(box(10, 50), centre) == {"left of"}
    assert rules.relative_position(box(90, 50), centre) == {"right of"}
    assert rules.relative_position(box(50, 10), centre) == {"above"}  # y points down
    assert rules.relative_position(box(50, 90), centre) == {"below"}


def test_diagonal_offsets_hold_both_relations_and_near_boxes_none():
    assert rules.relative_position(box(10, 10), box(50, 50)) == {"left of", "above"}
    # centres 1.5 px apart, boxes 10 px: the offset is within 0.1 x (10 + 10) = 2 px on each axis
    assert rules.relative_position(box(51.5, 50), box(50, 50)) == set()


def test_position_threshold_shrinks_the_offset_by_the_boxes_sizes():
    """dx = 30, boxes 100 wide: revised dx = 30 - 0.1 x 200 = 10, dy = 20 - 0.1 x 20 = 18 ->
    (10, 18) / |(30, 20)| = (0.277, 0.499): neither passes 0.5. With threshold 0 it is 'right of'
    (0.83) and not 'below' (0.55 > 0.5: both)."""
    a, b = box(80, 70, w=100, h=10), box(50, 50, w=100, h=10)
    assert rules.relative_position(a, b, 0.1) == set()
    assert rules.relative_position(a, b, 0.0) == {"right of", "below"}


# --- detections per class -------------------------------------------------------------------

def test_detections_threshold_order_cap_and_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [20, 20, 30, 30], [70, 70, 80, 80]], float)
    scores = np.array([0.5, 0.9, 0.8, 0.05, 0.7])
    labels = np.array([0, 0, 0, 1, 0])
    found = rules.detections_by_class(boxes, scores, labels, ["dog", "cat"], threshold=0.1, max_objects=2, nms_iou=0.5)
    # box 1 (0.9) first; box 0 overlaps it (IoU 0.68) and goes; the cat is under the threshold; cap 2
    assert found == {"dog": [[1, 1, 11, 11, 0.9], [50, 50, 60, 60, pytest.approx(0.8)]]}
    kept_all = rules.detections_by_class(boxes, scores, labels, ["dog", "cat"], 0.1, 16, nms_iou=1.0)
    assert len(kept_all["dog"]) == 4


# --- GenEval's checks -----------------------------------------------------------------------

def prompt(category, objects, relation=None):
    return {e.PROMPT_ID: "p", e.PROMPT_TEXT: "t", e.PROMPT_CATEGORY: category,
            e.PROMPT_OBJECTS: [{"name": n, "count": c, **attrs} for n, c, attrs in objects],
            e.PROMPT_RELATION: relation}


def test_counting_is_exact():
    p = prompt(e.COUNTING, [("dog", 3, {})])
    three = {"dog": [box(10 * i, 10) for i in range(3)]}
    four = {"dog": [box(10 * i, 10) for i in range(4)]}
    two = {"dog": [box(10 * i, 10) for i in range(2)]}
    assert rules.geneval_checks(p, {}, {}, counting_found=three)["counting"] is True
    assert rules.geneval_checks(p, {}, {}, counting_found=four)["counting"] is False
    verdict = rules.geneval_checks(p, {}, {}, counting_found=two)
    assert verdict["counting"] is False and verdict["object"] is False and verdict["geneval"] is False


def test_objects_and_colours():
    p = prompt(e.COLOR_ATTR, [("car", 1, {"colour": "red"}), ("dog", 1, {"colour": "blue"})])
    found = {"car": [box(10, 10)], "dog": [box(50, 50)]}
    right = rules.geneval_checks(p, found, {0: ["red"], 1: ["blue"]})
    assert right == {"object": True, "counting": None, "colour": True, "position": None, "geneval": True}
    swapped = rules.geneval_checks(p, found, {0: ["blue"], 1: ["red"]})
    assert swapped["colour"] is False and swapped["object"] is True and swapped["geneval"] is False
    missing = rules.geneval_checks(p, {"car": [box(10, 10)]}, {0: ["red"]})
    assert missing["object"] is False and missing["colour"] is False


def test_position_every_pair_of_found_boxes():
    p = prompt(e.POSITION, [("cat", 1, {}), ("dog", 1, {})], {"subject": 0, "relation": "left of", "object": 1})
    assert rules.geneval_checks(p, {"cat": [box(10, 50)], "dog": [box(90, 50)]}, {})["position"] is True
    assert rules.geneval_checks(p, {"cat": [box(90, 50)], "dog": [box(10, 50)]}, {})["position"] is False
    assert rules.geneval_checks(p, {"cat": [box(10, 50)]}, {})["position"] is False  # no dog


# --- T2I-CompBench's 2D spatial ----------------------------------------------------------------

def test_compbench_position_score():
    assert rules.compbench_position("left of", box(10, 50), box(90, 50)) == 1.0
    assert rules.compbench_position("right of", box(10, 50), box(90, 50)) == 0.0
    assert rules.compbench_position("above", box(50, 10), box(50, 90)) == 1.0
    assert rules.compbench_position("below", box(50, 10), box(50, 90)) == 0.0
    assert rules.compbench_position("left of", box(10, 10), box(20, 90)) == 0.0  # mostly vertical apart
    # overlapping boxes: 20x20 boxes 10 px apart: IoU = 200 / 600 = 1/3 -> 0.1 / (1/3) = 0.3
    assert rules.compbench_position("left of", box(50, 50, 20, 20), box(60, 50, 20, 20)) == pytest.approx(0.3)


def test_compbench_spatial_image_score():
    p = prompt(e.SPATIAL, [("cat", 1, {}), ("dog", 1, {})], {"subject": 0, "relation": "left of", "object": 1})
    both = {"cat": [box(10, 50, score=0.8)], "dog": [box(90, 50, score=0.6)]}
    assert rules.compbench_spatial(p, both) == pytest.approx(0.25 * 0.8 + 0.25 * 0.6 + 0.5)
    wrong_way = {"cat": [box(90, 50, score=0.8)], "dog": [box(10, 50, score=0.6)]}
    assert rules.compbench_spatial(p, wrong_way) == 0.0  # 0.35 < 0.5
    assert rules.compbench_spatial(p, {"cat": [box(10, 50, score=1.0)]}) == 0.0  # 0.25 < 0.5


# --- T2I-CompBench's BLIP-VQA --------------------------------------------------------------

def test_p_yes_is_the_softmax_renormalised_over_yes_and_no():
    logits = np.array([2.0, 0.5, -1.0, 3.0])  # yes = 3, no = 1
    soft = np.exp(logits) / np.exp(logits).sum()
    assert rules.p_yes(logits, 3, 1) == pytest.approx(soft[3] / (soft[3] + soft[1]))
    assert rules.p_yes(np.array([0.0, 0.0]), 0, 1) == pytest.approx(0.5)


def test_binding_is_the_product_of_p_yes():
    assert rules.binding_score([0.9, 0.5]) == pytest.approx(0.45)
    assert rules.binding_score([0.9, 0.5, 0.2]) == pytest.approx(0.09)
    assert rules.binding_score([]) == 1.0


# --- CLIP ---------------------------------------------------------------------------------

def test_zero_shot_colour_classifier():
    """Two colours, two templates each: the class weight is the normalised mean of normalised texts."""
    texts = np.array([[[1.0, 0, 0], [2.0, 0.2, 0]], [[0, 1.0, 0], [0, 3.0, 0.3]]])
    weights = rules.zero_shot_weights(texts)
    assert np.allclose(np.linalg.norm(weights, axis=1), 1)
    assert rules.classify(np.array([[5.0, 1.0, 0], [0.1, 2.0, 0]]), weights, ["red", "blue"]) == ["red", "blue"]


def test_cosine():
    assert rules.cosine(np.array([[1.0, 0]]), np.array([[2.0, 2.0]]))[0] == pytest.approx(1 / math.sqrt(2))
