"""Prompt sets: the built-in ones carry their structure; a user's file is checked line by line."""
import json

import pytest

from pixcap.evaluation.prompts import builtin_prompts, load_prompts, noun_phrase, plural, read_prompt_file
from pixcap.schemas import JobError
from pixcap.schemas import evaluation as e


def test_builtin_set_covers_every_category_with_structure():
    prompts = builtin_prompts("builtin")
    by_category = {}
    for p in prompts:
        by_category.setdefault(p["category"], []).append(p)
    assert set(by_category) == set(e.GENEVAL_CATEGORIES + e.COMPBENCH_CATEGORIES)
    assert len(by_category[e.SINGLE_OBJECT]) == 80
    assert {p["objects"][0]["name"] for p in by_category[e.SINGLE_OBJECT]} == set(e.COCO_CLASSES)
    assert {p["objects"][0]["count"] for p in by_category[e.COUNTING]} == {2, 3, 4}
    assert {p["objects"][0]["colour"] for p in by_category[e.COLORS]} == set(e.PROMPT_COLOURS)
    assert {p["relation"]["relation"] for p in by_category[e.POSITION]} == set(e.POSITIONS)
    assert len({p["id"] for p in prompts}) == len(prompts)
    for p in prompts:  # the text says what the structure says
        for obj in p["objects"]:
            assert noun_phrase(obj) in p["prompt"], p
    two = by_category[e.TWO_OBJECT][0]
    assert two["prompt"] == f"a photo of {noun_phrase(two['objects'][0])} and {noun_phrase(two['objects'][1])}"


def test_examples_read_as_geneval_and_compbench_write_them():
    assert noun_phrase({"name": "dog", "count": 3}) == "three dogs"
    assert noun_phrase({"name": "apple", "count": 1, "colour": "red"}) == "a red apple"
    assert noun_phrase({"name": "umbrella", "count": 1}) == "an umbrella"
    assert noun_phrase({"name": "clock", "count": 1, "shape": "oval"}) == "an oval clock"
    assert plural("person") == "people" and plural("bus") == "buses" and plural("wine glass") == "wine glasses"
    spatial = builtin_prompts("compbench", 3)
    relation = next(p for p in spatial if p["category"] == e.SPATIAL)
    assert " on the " in relation["prompt"] and not relation["prompt"].startswith("a photo")


def test_sets_are_fixed_and_capping_keeps_the_first():
    assert builtin_prompts("geneval") == builtin_prompts("geneval")
    small = builtin_prompts("geneval", per_category=2)
    assert len(small) == 2 * len(e.GENEVAL_CATEGORIES)
    full = builtin_prompts("geneval")
    for p in small:
        assert p in full


def test_user_jsonl_and_text(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"prompt": "a photo of two cats", "category": "counting", "objects": [{"name": "cat", "count": 2}]},
            {"prompt": "sunset over a lake"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    prompts = read_prompt_file(str(path))
    assert [p["category"] for p in prompts] == ["counting", "plain"]
    assert prompts[0]["objects"] == [{"name": "cat", "count": 2}]
    text = tmp_path / "mine.txt"
    text.write_text("a red car\n\n  a dog on a bench \n")
    plain = load_prompts(str(text))
    assert [(p["prompt"], p["category"]) for p in plain] == [("a red car", "plain"), ("a dog on a bench", "plain")]


@pytest.mark.parametrize("line, message", [
    ('{"prompt": ""}', "non-empty 'prompt'"),
    ("not json", "not JSON"),
    ('{"prompt": "x", "category": "counting"}', "needs 'objects'"),
    ('{"prompt": "x", "category": "nope", "objects": [{"name": "cat"}]}', "unknown category"),
    ('{"prompt": "x", "category": "colors", "objects": [{"name": "cat", "colour": "teal"}]}', "colour 'teal'"),
    ('{"prompt": "x", "category": "counting", "objects": [{"name": "cat", "count": 0}]}', "positive integer"),
    ('{"prompt": "x", "category": "position", "objects": [{"name": "cat"}, {"name": "dog"}]}', "needs a 'relation'"),
    ('{"prompt": "x", "objects": [{"name": "cat"}], "relation": {"subject": 0, "relation": "near", "object": 1}}',
     "a relation is"),
])
def test_bad_lines_are_one_line_errors_naming_the_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(JobError, match=message) as caught:
        read_prompt_file(str(path))
    assert f"{path}:2" in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_set_and_empty_file(tmp_path):
    with pytest.raises(JobError, match="neither a built-in set"):
        load_prompts("nonexistent-set")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(JobError, match="no prompts"):
        load_prompts(str(empty))
