"""`pixcap eval --pairwise EVAL_A EVAL_B --output study.html`: one self-contained page for a user
study, as PixArt-alpha asked people to choose between models.

Each pair is the two models' images of one prompt and seed. The order of the pairs and the side
each model is shown on are drawn here from --study-seed, and recorded in the page, so a choice is
stored as the model chosen ("a", "b" or "tie"), never as a side. The page keeps the choices in its
localStorage (a reload, or a closed tab, resumes where the person stopped), shows its progress,
and downloads them as JSON, which `pixcap report` reads. It fetches nothing: the images are data
URIs and a Content-Security-Policy forbids any other load.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import random

import pyarrow.parquet as pq
from PIL import Image

from pixcap.schemas import JobError
from pixcap.schemas import evaluation as e

from pixcap.analysis.page import standalone_page

from .study_page import SCRIPT, STYLE

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "connect-src 'none'; base-uri 'none'; form-action 'none'")
MAX_SIDE = 512  # images larger than this are shown scaled down (the page holds every image)


@dataclasses.dataclass
class StudyPage:
    path: str
    pairs: int
    study: str


def _rows(eval_dir: str) -> dict:
    if not os.path.isfile(os.path.join(eval_dir, e.EVAL_SUMMARY)):
        raise JobError(f"--pairwise: {eval_dir} is not a finished pixcap eval (no {e.EVAL_SUMMARY})")
    folder = os.path.join(eval_dir, e.EVAL_SCORES)
    rows = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".parquet"):
            for row in pq.read_table(os.path.join(folder, name), columns=["prompt_id", "prompt", "image_index", "seed",
                                                                          "image"]).to_pylist():
                rows[(row["prompt_id"], row["image_index"], row["seed"])] = row
    return rows


def _data_uri(path: str) -> str:
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=92)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def study_pairs(eval_a: str, eval_b: str, seed: int = 0) -> list:
    """The pairs in the page's order, each with the side model A is shown on."""
    a, b = _rows(eval_a), _rows(eval_b)
    common = sorted(set(a) & set(b))
    if not common:
        raise JobError(f"--pairwise: {eval_a} and {eval_b} share no prompt and seed; evaluate both on one prompt set "
                       f"with the same seed")
    rng = random.Random(seed)
    rng.shuffle(common)
    pairs = []
    for i, key in enumerate(common):
        a_left = rng.random() < 0.5
        images = [os.path.join(eval_a, a[key]["image"]), os.path.join(eval_b, b[key]["image"])]
        pairs.append({"pair": i, "prompt_id": key[0], "image_index": key[1], "seed": key[2],
                      "prompt": a[key]["prompt"], "left": "a" if a_left else "b",
                      "images": images if a_left else images[::-1]})
    return pairs


def render_study(pairs: list, label_a: str, label_b: str, study: str) -> str:
    data = {"kind": e.STUDY_KIND, "study": study, "a": label_a, "b": label_b,
            "pairs": [{**{k: v for k, v in p.items() if k != "images"},
                       "images": [_data_uri(path) for path in p["images"]]} for p in pairs]}
    payload = json.dumps(data).replace("</", "<\\/")
    body = f"""<h1>Which image is better?</h1>
<p class="note">For each pair, choose the image that fits the text better, and the image of better quality.
Your choices are kept in this browser; download them when you are done.</p>
<p id="progress" data-done="0">…</p>
<p id="prompt"></p>
<div class="pair"><img id="left" alt="left image"><img id="right" alt="right image"></div>
<div class="aspects">
<div><b>Fits the text better:</b>
<button data-aspect="alignment" data-side="left">Left</button><button data-aspect="alignment" data-side="tie">Same</button><button data-aspect="alignment" data-side="right">Right</button></div>
<div><b>Better quality:</b>
<button data-aspect="quality" data-side="left">Left</button><button data-aspect="quality" data-side="tie">Same</button><button data-aspect="quality" data-side="right">Right</button></div>
</div>
<p><button id="previous">Previous pair</button> <button id="next">Next pair</button>
<button id="download">Download choices (JSON)</button></p>
<script type="application/json" id="study-data">{payload}</script>"""
    return standalone_page(f"Which image is better? ({study})", STYLE, body, tail_script=SCRIPT, csp=CSP)


def write_study_page(eval_a: str, eval_b: str, output: str, seed: int = 0) -> StudyPage:
    pairs = study_pairs(eval_a, eval_b, seed)
    label_a, label_b = (os.path.basename(os.path.normpath(p)) for p in (eval_a, eval_b))
    if label_a == label_b:
        label_a, label_b = os.path.abspath(eval_a), os.path.abspath(eval_b)
    study = hashlib.sha256(json.dumps([label_a, label_b, seed, [p["prompt_id"] for p in pairs]]).encode()).hexdigest()[:12]
    page = render_study(pairs, label_a, label_b, study).encode("utf-8")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output + ".partial", "wb") as f:
        f.write(page)
    os.replace(output + ".partial", output)
    return StudyPage(output, len(pairs), study)
