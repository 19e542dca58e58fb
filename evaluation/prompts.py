"""Prompt sets: pixcap's own, made from templates with their structure, and a user's prompt file.

Every built-in prompt carries what it asks for (objects with counts and attributes, a relation),
so scoring never parses text. The templates follow GenEval's (single and two objects over COCO's
80 classes, counts 2-4, colours, four positions, colour attribution) and T2I-CompBench's (colour,
shape and texture binding, 2D spatial). Each category draws from its own seeded generator, so
capping a set (prompts_per_category) keeps its first prompts unchanged.
"""
from __future__ import annotations

import itertools
import json
import os
import random
from typing import List

from pixcap.schemas import JobError
from pixcap.schemas import evaluation as e

# GenEval's set sizes: 80 single objects (every class), about 100 of each other task.
CATEGORY_SIZE = 100
BUILTIN_SETS = {
    "builtin": e.GENEVAL_CATEGORIES + e.COMPBENCH_CATEGORIES,
    "geneval": e.GENEVAL_CATEGORIES,
    "compbench": e.COMPBENCH_CATEGORIES,
}
# T2I-CompBench writes its 2D relations this way.
COMPBENCH_RELATIONS = {"left of": "on the left of", "right of": "on the right of",
                       "above": "on the top of", "below": "on the bottom of"}
IRREGULAR_PLURALS = {"person": "people", "mouse": "mice", "sheep": "sheep", "skis": "skis", "knife": "knives",
                     "scissors": "scissors", "bus": "buses", "couch": "couches", "sandwich": "sandwiches",
                     "wine glass": "wine glasses", "tv": "tvs", "toothbrush": "toothbrushes", "bench": "benches"}
VOWEL_SOUNDS = tuple("aeiou")


def plural(name: str) -> str:
    if name in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[name]
    return name + ("es" if name.endswith(("s", "sh", "ch", "x")) else "s")


def article(word: str) -> str:
    return "an" if word.startswith(VOWEL_SOUNDS) else "a"


def noun_phrase(obj: dict) -> str:
    """'a red car', 'two dogs', 'an oval clock': an object as the prompt names it."""
    count = obj.get(e.OBJECT_COUNT, 1)
    words = [obj[k] for k in (e.OBJECT_COLOUR, e.OBJECT_SHAPE, e.OBJECT_TEXTURE) if obj.get(k)]
    if count > 1:
        return " ".join([e.COUNT_WORDS.get(count, str(count)), *words, plural(obj[e.OBJECT_NAME])])
    body = " ".join([*words, obj[e.OBJECT_NAME]])
    return f"{article(body)} {body}"


def _record(category: str, i: int, text: str, objects: list, relation=None) -> dict:
    return {e.PROMPT_ID: f"{category}-{i:04d}", e.PROMPT_TEXT: text, e.PROMPT_CATEGORY: category,
            e.PROMPT_OBJECTS: objects, e.PROMPT_RELATION: relation}


def _obj(name: str, count: int = 1, **attributes) -> dict:
    return {e.OBJECT_NAME: name, e.OBJECT_COUNT: count, **attributes}


def _two_classes(rng: random.Random) -> tuple:
    a, b = rng.sample(e.COCO_CLASSES, 2)
    return a, b


def _category(category: str, rng: random.Random) -> List[dict]:
    """All the prompts of one category, in their fixed order."""
    out = []
    if category == e.SINGLE_OBJECT:
        for i, name in enumerate(e.COCO_CLASSES):
            out.append(_record(category, i, f"a photo of {noun_phrase(_obj(name))}", [_obj(name)]))
        return out
    for i in range(CATEGORY_SIZE):
        a, b = _two_classes(rng)
        if category == e.TWO_OBJECT:
            objects = [_obj(a), _obj(b)]
            text = f"a photo of {noun_phrase(objects[0])} and {noun_phrase(objects[1])}"
            out.append(_record(category, i, text, objects))
        elif category == e.COUNTING:
            objects = [_obj(a, rng.choice(sorted(e.COUNT_WORDS)))]
            out.append(_record(category, i, f"a photo of {noun_phrase(objects[0])}", objects))
        elif category == e.COLORS:
            objects = [_obj(a, colour=rng.choice(e.PROMPT_COLOURS))]
            out.append(_record(category, i, f"a photo of {noun_phrase(objects[0])}", objects))
        elif category in (e.POSITION, e.SPATIAL):
            relation = rng.choice(e.POSITIONS)
            objects = [_obj(a), _obj(b)]
            words = relation if category == e.POSITION else COMPBENCH_RELATIONS[relation]
            lead = "a photo of " if category == e.POSITION else ""
            text = f"{lead}{noun_phrase(objects[0])} {words} {noun_phrase(objects[1])}"
            out.append(_record(category, i, text, objects, {e.RELATION_SUBJECT: 0, e.RELATION_NAME: relation,
                                                            e.RELATION_OBJECT: 1}))
        else:
            key, values = {e.COLOR_ATTR: (e.OBJECT_COLOUR, e.PROMPT_COLOURS),
                           e.COLOUR_BINDING: (e.OBJECT_COLOUR, e.PROMPT_COLOURS),
                           e.SHAPE_BINDING: (e.OBJECT_SHAPE, e.SHAPES),
                           e.TEXTURE_BINDING: (e.OBJECT_TEXTURE, e.TEXTURES)}[category]
            first, second = rng.sample(values, 2)
            objects = [_obj(a, **{key: first}), _obj(b, **{key: second})]
            lead = "a photo of " if category == e.COLOR_ATTR else ""
            out.append(_record(category, i, f"{lead}{noun_phrase(objects[0])} and {noun_phrase(objects[1])}", objects))
    return out


def builtin_prompts(name: str, per_category: int = 0) -> List[dict]:
    """A built-in set by name; per_category > 0 keeps the first that many of each category."""
    if name not in BUILTIN_SETS:
        raise JobError(f"unknown prompt set {name!r}; built in: {', '.join(BUILTIN_SETS)}, or a .jsonl/.txt file")
    prompts = []
    for category in BUILTIN_SETS[name]:
        records = _category(category, random.Random(f"pixcap-prompts/{category}"))
        prompts += records[:per_category] if per_category else records
    return prompts


def _check_object(obj, where: str) -> dict:
    if not isinstance(obj, dict) or not isinstance(obj.get(e.OBJECT_NAME), str) or not obj[e.OBJECT_NAME]:
        raise JobError(f"{where}: an object is a mapping with a non-empty 'name'")
    count = obj.setdefault(e.OBJECT_COUNT, 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise JobError(f"{where}: object count must be a positive integer, got {count!r}")
    colour = obj.get(e.OBJECT_COLOUR)
    if colour is not None and colour not in e.CLASSIFIER_COLOURS:
        raise JobError(f"{where}: colour {colour!r} is not one GenEval's classifier knows: "
                       f"{', '.join(e.CLASSIFIER_COLOURS)}")
    return obj


def _check_record(record, where: str, index: int) -> dict:
    if not isinstance(record, dict) or not isinstance(record.get(e.PROMPT_TEXT), str) or not record[e.PROMPT_TEXT].strip():
        raise JobError(f"{where}: a prompt line is a JSON object with a non-empty 'prompt'")
    objects = record.get(e.PROMPT_OBJECTS) or []
    if not isinstance(objects, list):
        raise JobError(f"{where}: 'objects' must be a list")
    objects = [_check_object(o, where) for o in objects]
    category = record.get(e.PROMPT_CATEGORY) or e.PLAIN
    if category not in e.CATEGORIES:
        raise JobError(f"{where}: unknown category {category!r}; known: {', '.join(e.CATEGORIES)}")
    if category != e.PLAIN and not objects:
        raise JobError(f"{where}: category {category} needs 'objects'")
    relation = record.get(e.PROMPT_RELATION)
    if relation is not None:
        ok = (isinstance(relation, dict) and relation.get(e.RELATION_NAME) in e.POSITIONS
              and all(isinstance(relation.get(k), int) and 0 <= relation[k] < len(objects)
                      for k in (e.RELATION_SUBJECT, e.RELATION_OBJECT)))
        if not ok:
            raise JobError(f"{where}: a relation is {{'subject': i, 'relation': one of {list(e.POSITIONS)}, "
                           f"'object': j}} over the prompt's objects")
    if category in (e.POSITION, e.SPATIAL) and relation is None:
        raise JobError(f"{where}: category {category} needs a 'relation'")
    pid = str(record.get(e.PROMPT_ID) or f"user-{index:05d}")
    return _record(category, 0, record[e.PROMPT_TEXT], objects, relation) | {e.PROMPT_ID: pid}


def read_prompt_file(path: str) -> List[dict]:
    """A .jsonl file (records as the built-in sets write them) or a text file (one prompt a line,
    category plain: CLIP score and FID only). Any bad line is a JobError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as err:
        raise JobError(f"{path}: not UTF-8 text: {err.reason} at byte {err.start}") from None
    prompts = []
    jsonl = path.endswith(".jsonl")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if jsonl:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise JobError(f"{where}: not JSON: {err.msg}") from None
            prompts.append(_check_record(record, where, len(prompts)))
        else:
            prompts.append(_record(e.PLAIN, len(prompts), line.strip(), []) | {e.PROMPT_ID: f"user-{len(prompts):05d}"})
    if not prompts:
        raise JobError(f"{path}: no prompts in it")
    ids = [p[e.PROMPT_ID] for p in prompts]
    duplicate = next((i for i, n in itertools.groupby(sorted(ids)) if len(list(n)) > 1), None)
    if duplicate is not None:
        raise JobError(f"{path}: prompt id {duplicate!r} appears more than once")
    return prompts


def load_prompts(spec: str, per_category: int = 0) -> List[dict]:
    """`--prompts SET`: a built-in set's name, or a prompt file."""
    if spec in BUILTIN_SETS:
        return builtin_prompts(spec, per_category)
    if os.path.isfile(spec):
        return read_prompt_file(spec)
    raise JobError(f"--prompts: {spec!r} is neither a built-in set ({', '.join(BUILTIN_SETS)}) nor a file")
