"""`pixcap eval`: generate the prompt set's images with a trained pipeline, score them, and write
EVAL/summary.json. Resumable and exactly once.

The images are made and scored in fixed batches (the prompt set's order, `batch_size` at a time).
A batch is done when its scores parquet exists: its images and features are written first, the
parquet last, each file whole under its final name (a temporary name, then a rename). A killed
eval, run again, redoes only the batches without a parquet, with the same seeds in the same
batches, so it writes the same images and the same summary as an eval that was never stopped.
"""
from __future__ import annotations

import io
import json
import os
import re
import sys
from typing import Callable, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixcap.schemas import JobError
from pixcap.schemas import evaluation as e
from pixcap.schemas.eval_job import EvalJob

from .frechet import frechet_between
from .generate import image_seed, pipeline_folder, quiet_loading
from .prompts import load_prompts
from .summary import summarise_scores

TMP = ".pixcap-tmp"


def _say(line: str) -> None:
    print(f"pixcap eval: {line}", file=sys.stderr, flush=True)


def write_atomic(path: str, data: bytes) -> None:
    with open(path + TMP, "wb") as f:
        f.write(data)
    os.replace(path + TMP, path)


def folder_identity(folder: str) -> list:
    """What the pipeline folder holds: each file's path and size, and the sha256 of the transformer's
    files (what training changes; T5 and the VAE, many GB, are named and sized only). A model
    exported again with the same weights is the same model."""
    import hashlib

    out = []
    for root, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            entry = [relative, os.path.getsize(path)]
            if relative.startswith("transformer" + os.sep):
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                entry.append(digest.hexdigest())
            out.append(entry)
    return out


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)[:60] or "prompt"


def take_output(output: str, config: dict, prompts: List[dict]) -> None:
    """Start EVAL, or check that it was started with exactly these settings (JobError otherwise)."""
    config_path = os.path.join(output, e.EVAL_CONFIG)
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            before = json.load(f)
        if before != config:
            changed = sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))
            raise JobError(f"{output} holds an eval made with other settings ({', '.join(changed)}); "
                           f"use another --output")
        return
    if os.path.isdir(output) and any(not n.endswith(TMP) for n in os.listdir(output)):
        raise JobError(f"{output}: exists and is not a pixcap eval; use a new folder")
    for sub in (e.EVAL_IMAGES, e.EVAL_SCORES, e.EVAL_FEATURES):
        os.makedirs(os.path.join(output, sub), exist_ok=True)
    lines = "".join(json.dumps(p, sort_keys=True) + "\n" for p in prompts)
    write_atomic(os.path.join(output, e.EVAL_PROMPTS), lines.encode())
    write_atomic(config_path, json.dumps(config, indent=1, sort_keys=True).encode())  # last: EVAL is taken


def plan(prompts: List[dict], job: EvalJob) -> List[List[dict]]:
    """The items (prompt, image index, seed, image file) in fixed batches."""
    items = []
    for ordinal, prompt in enumerate(prompts):
        for j in range(job.images_per_prompt):
            items.append({"prompt": prompt, "index": j, "seed": image_seed(job.seed, prompt[e.PROMPT_ID], j),
                          "image": f"{e.EVAL_IMAGES}/{ordinal:06d}_{safe_name(prompt[e.PROMPT_ID])}_{j:02d}.png"})
    return [items[i:i + job.batch_size] for i in range(0, len(items), job.batch_size)]


def scores_path(output: str, k: int) -> str:
    return os.path.join(output, e.EVAL_SCORES, f"batch-{k:06d}.parquet")


def features_path(output: str, k: int) -> str:
    return os.path.join(output, e.EVAL_FEATURES, f"batch-{k:06d}.npz")


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in arrays.items() if v is not None})
    return buffer.getvalue()


def run_batch(output: str, k: int, batch: List[dict], generator, scorers) -> None:
    prompts = [item["prompt"] for item in batch]
    images = generator.images([p[e.PROMPT_TEXT] for p in prompts], [item["seed"] for item in batch])
    for item, image in zip(batch, images):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        write_atomic(os.path.join(output, item["image"]), buffer.getvalue())
    rows, clip_features = scorers.score_batch(prompts, images)
    inception = scorers.fid_features(images)
    write_atomic(features_path(output, k), _npz_bytes(clip=clip_features, inception=inception))
    table = [{"prompt_id": item["prompt"][e.PROMPT_ID], "category": item["prompt"][e.PROMPT_CATEGORY],
              "prompt": item["prompt"][e.PROMPT_TEXT], "image_index": item["index"], "seed": item["seed"],
              "image": item["image"], **row} for item, row in zip(batch, rows)]
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(table, schema=e.SCORES_SCHEMA), buffer)
    write_atomic(scores_path(output, k), buffer.getvalue().to_pybytes())  # last: the batch is done


def reference_statistics(output: str, reference: str, job: EvalJob, scorers_of: Callable) -> dict:
    """The reference set's CLIP and Inception features, read once and kept in EVAL/reference.npz."""
    path = os.path.join(output, e.EVAL_REFERENCE)
    if os.path.isfile(path):
        with np.load(path) as stored:
            return {k: stored[k] for k in stored.files}
    from .reference import reference_images

    scorers = scorers_of()
    clip, inception, broken, chunk = [], [], 0, []

    def flush():
        clip.append(scorers.clip.image_embeddings(chunk))
        feats = scorers.fid_features(chunk)
        if feats is not None:
            inception.append(feats)
        chunk.clear()

    for image in reference_images(reference, job.fid.max_reference):
        if image is None:
            broken += 1
            continue
        chunk.append(image)
        if len(chunk) == 32:
            flush()
    if chunk:
        flush()
    stats = {"clip": np.concatenate(clip) if clip else np.zeros((0, 1), np.float32),
             "broken": np.array(broken)}
    if inception:
        stats["inception"] = np.concatenate(inception)
    write_atomic(path, _npz_bytes(**stats))
    return stats


def fid_figures(output: str, n_batches: int, reference: Optional[str], job: EvalJob, scorers_of: Callable) -> dict:
    if not reference:
        return {"fid": None, "clip_fid": None, "reference": None, "note": "no --reference given"}
    generated = {"clip": [], "inception": []}
    for k in range(n_batches):
        with np.load(features_path(output, k)) as stored:
            for key in generated:
                if key in stored.files:
                    generated[key].append(stored[key])
    ref = reference_statistics(output, reference, job, scorers_of)
    out = {"reference": reference, "reference_images": int(len(ref["clip"])), "reference_broken": int(ref["broken"]),
           "images": int(sum(len(x) for x in generated["clip"]))}
    for key, name in (("inception", "fid"), ("clip", "clip_fid")):
        mine = np.concatenate(generated[key]) if generated[key] else None
        if mine is None or key not in ref:
            out[name] = None
            out.setdefault("note", "no fid.inception weights given: Inception FID not computed")
        elif len(mine) < 2 or len(ref[key]) < 2:
            out[name] = None
            out["note"] = "FID needs at least two images on each side"
        else:
            out[name] = frechet_between(mine, ref[key])
    return out


def read_scores(output: str, n_batches: int) -> List[dict]:
    rows = []
    for k in range(n_batches):
        rows += pq.read_table(scores_path(output, k)).to_pylist()
    return rows


def run_eval(source: str, prompts_spec: str, output: str, job: EvalJob, reference: Optional[str] = None,
             say: Callable[[str], None] = _say) -> dict:
    """Generate, score and summarise; returns the summary (also EVAL/summary.json)."""
    import torch

    folder = pipeline_folder(source)
    prompts = load_prompts(prompts_spec, job.prompts_per_category)
    if reference:
        from .reference import reference_files

        reference_files(reference)  # refused now, not after the images are made
    config = {"kind": e.EVAL_KIND, "pipeline": folder, "pipeline_files": folder_identity(folder),
              "prompts": prompts_spec, "job": job.to_dict(),
              "reference": os.path.abspath(reference) if reference and os.path.exists(reference) else reference}
    take_output(output, config, prompts)
    batches = plan(prompts, job)
    pending = [k for k in range(len(batches)) if not os.path.isfile(scores_path(output, k))]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    quiet_loading()
    loaded = {}

    def scorers_of():
        if "scorers" not in loaded:
            from .scoring import Scorers

            loaded["scorers"] = Scorers(job, device)
        return loaded["scorers"]

    if pending:
        from .generate import Generator

        say(f"{len(prompts)} prompts x {job.images_per_prompt} images: {len(pending)} of {len(batches)} batches to do")
        generator = Generator(folder, job.steps, job.guidance_scale, job.height, job.width, device)
        for done, k in enumerate(pending, 1):
            run_batch(output, k, batches[k], generator, scorers_of())
            say(f"batch {done}/{len(pending)} done")
    summary = {e.SUMMARY_KIND: e.EVAL_KIND, e.SUMMARY_LABEL: os.path.basename(os.path.normpath(output)),
               "pipeline": folder, "prompts": prompts_spec,
               **summarise_scores(read_scores(output, len(batches))),
               e.SUMMARY_FID: fid_figures(output, len(batches), config["reference"], job, scorers_of)}
    write_atomic(os.path.join(output, e.EVAL_SUMMARY), json.dumps(summary, indent=1, sort_keys=True).encode())
    return summary
