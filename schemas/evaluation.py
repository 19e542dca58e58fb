"""The contracts of `pixcap eval`: prompt records, the per-image scores, the summary, the layout of
an EVAL folder and the user study's choices file.

The prompt vocabulary (COCO's 80 class names, colours, positions, shapes, textures) lives here too:
the prompt sets are built from it and the tiny scoring models' tokenizers know its words.
"""
from __future__ import annotations

import pyarrow as pa

# COCO's 80 detection classes, as GenEval's object_names.txt lists them.
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
# The colours prompts ask for (eight), and the ten GenEval's CLIP classifier chooses among.
PROMPT_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "black", "white")
CLASSIFIER_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
POSITIONS = ("left of", "right of", "above", "below")
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
# T2I-CompBench's shape and texture binding words (a subset of its prompt vocabulary).
SHAPES = ("round", "square", "triangular", "rectangular", "oval", "cylindrical")
TEXTURES = ("wooden", "metallic", "plastic", "glass", "fluffy", "leather")

# Prompt categories. GenEval's six tasks, T2I-CompBench's three attribute-binding ones and its 2D
# spatial one, and a user's plain-text prompt (CLIP score and FID only).
SINGLE_OBJECT, TWO_OBJECT, COUNTING, COLORS, POSITION, COLOR_ATTR = (
    "single_object", "two_object", "counting", "colors", "position", "color_attr")
GENEVAL_CATEGORIES = (SINGLE_OBJECT, TWO_OBJECT, COUNTING, COLORS, POSITION, COLOR_ATTR)
COLOUR_BINDING, SHAPE_BINDING, TEXTURE_BINDING, SPATIAL = (
    "colour_binding", "shape_binding", "texture_binding", "spatial")
BINDING_CATEGORIES = (COLOUR_BINDING, SHAPE_BINDING, TEXTURE_BINDING)
COMPBENCH_CATEGORIES = (*BINDING_CATEGORIES, SPATIAL)
PLAIN = "plain"
CATEGORIES = (*GENEVAL_CATEGORIES, *COMPBENCH_CATEGORIES, PLAIN)

# A prompt record (one line of EVAL/prompts.jsonl, and of a user's jsonl prompt file).
PROMPT_ID, PROMPT_TEXT, PROMPT_CATEGORY, PROMPT_OBJECTS, PROMPT_RELATION = (
    "id", "prompt", "category", "objects", "relation")
# objects: [{"name": "dog", "count": 1, "colour": "red"?, "shape": ...?, "texture": ...?}]
OBJECT_NAME, OBJECT_COUNT, OBJECT_COLOUR, OBJECT_SHAPE, OBJECT_TEXTURE = "name", "count", "colour", "shape", "texture"
# relation: {"subject": 0, "relation": "left of", "object": 1}: objects[0] is left of objects[1]
RELATION_SUBJECT, RELATION_NAME, RELATION_OBJECT = "subject", "relation", "object"

# The per-image scores (EVAL/scores/batch-NNNNNN.parquet). A score that does not apply to the
# image's prompt is null, and is left out of its metric's mean and count.
SCORES_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("category", pa.string()), ("prompt", pa.string()),
    ("image_index", pa.int32()), ("seed", pa.int64()), ("image", pa.string()),
    ("clip_score", pa.float32()),       # cosine of the image and prompt embeddings
    ("attribute_binding", pa.float32()),  # T2I-CompBench BLIP-VQA: product of P(yes) over noun phrases
    ("object", pa.bool_()),             # GenEval: every object detected (count objects, at least)
    ("counting", pa.bool_()),           # GenEval: each counted object detected exactly count times
    ("colour", pa.bool_()),             # GenEval: CLIP on the crops names the asked colour
    ("position", pa.bool_()),           # GenEval: the relation holds between the box centres
    ("geneval", pa.bool_()),            # GenEval's per-image verdict: every check of the prompt holds
    ("spatial", pa.float32()),          # T2I-CompBench 2D spatial score from the same boxes
    ("detections", pa.string()),        # JSON {class: [[x0, y0, x1, y1, score], ...]}, for inspection
])
SCORE_METRICS = ("clip_score", "attribute_binding", "object", "counting", "colour", "position", "geneval", "spatial")

# EVAL/ layout
EVAL_PROMPTS = "prompts.jsonl"
EVAL_CONFIG = "eval.json"  # what the eval was run with; a rerun with other settings is refused
EVAL_IMAGES = "images"
EVAL_SCORES = "scores"
EVAL_FEATURES = "features"  # per-batch Inception and CLIP image features (npz), for FID after a resume
EVAL_REFERENCE = "reference.npz"  # the reference set's feature statistics
EVAL_SUMMARY = "summary.json"  # written last: the eval is complete when it exists
EVAL_KIND = "pixcap-eval"

# summary.json keys
SUMMARY_KIND, SUMMARY_LABEL, SUMMARY_IMAGES, SUMMARY_METRICS, SUMMARY_FID, SUMMARY_GENEVAL_OVERALL = (
    "kind", "label", "images", "metrics", "fid", "geneval_overall")
# metrics: {metric: {"overall": {"mean": m, "count": n}, "categories": {category: {"mean": m, "count": n}}}}
# fid: {"fid": x | null, "clip_fid": y | null, "reference": "...", "reference_images": n, "images": n}

# The user study's choices file (the page's JSON download).
STUDY_KIND = "pixcap-study"
STUDY_ASPECTS = ("alignment", "quality")
STUDY_ANSWERS = ("a", "b", "tie")  # a choice names the model, never the side it was shown on
