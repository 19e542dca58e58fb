"""Tiny shards in the pipeline's contract: KEY.jpg, KEY.txt (caption), KEY.json (SAMPLE_SCHEMA fields)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from pixcap.schemas import records as r
from pixcap.schemas.records import CAPTION_EXT, IMAGE_EXT, RECORD_EXT, SAMPLE_COLUMNS

# (width, height): square, wide, tall, 5:4. Each covers its 256 bucket and the 256 square, so nothing is
# enlarged (which the trainer refuses) in either bucket mode.
SIZES = [(256, 256), (512, 256), (256, 512), (320, 256)]
WORDS = "a photo of the cat dog red blue green tree sky house".split()


def sample_record(key: str, shard: str, width: int, height: int, caption: str, i: int) -> dict:
    """A KEY.json body with every SAMPLE_SCHEMA column (None where the fixture has no value);
    clip_score, n_nouns and aesthetic_score vary with i (aesthetic_score is None for every 7th: not run)."""
    nouns = WORDS[4 : 4 + i % 4]
    values = {
        r.KEY: key, r.SHARD: shard, r.SOURCE: f"fixture::{key}.jpg", r.SHA256: f"{i:064x}", r.FORMAT: "jpeg",
        r.WIDTH: width, r.HEIGHT: height, r.ORIG_WIDTH: width * 4, r.ORIG_HEIGHT: height * 4,
        r.PASSTHROUGH: False, r.CAPTION: caption, r.CAPTION_MODEL: "fixture", r.NOUNS: nouns,
        r.N_NOUNS: len(nouns), r.CLIP_SCORE: round(0.1 + 0.05 * (i % 5), 3), r.GROUNDED_NOUNS: nouns[:1],
        r.N_GROUNDED: min(1, len(nouns)), r.CLIP_MODEL: "fixture",
        r.AESTHETIC_SCORE: None if i % 7 == 6 else round(4.0 + 0.5 * (i % 4), 2),
    }
    assert set(values) <= set(SAMPLE_COLUMNS)
    return {name: values.get(name) for name in SAMPLE_COLUMNS}


def write_shards(directory, n_shards: int = 4, per_shard: int = 8, seed: int = 0, sizes=SIZES) -> list:
    """Write n_shards tars of per_shard samples each (smooth coloured images of the given sizes); return paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for s in range(n_shards):
        shard = f"shard-{s:05d}"
        path = directory / f"{shard}.tar"
        with wds.TarWriter(str(path)) as sink:
            for j in range(per_shard):
                i = s * per_shard + j
                width, height = sizes[i % len(sizes)]
                # A colour gradient: smooth enough that a tiny model can learn it.
                base = rng.integers(0, 256, size=3)
                ramp = np.linspace(0, 1, width)[None, :, None] * np.linspace(0.5, 1, height)[:, None, None]
                pixels = (base * ramp).astype(np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
                key = f"fixture/{shard}/{j:04d}"
                caption = " ".join(rng.choice(WORDS, size=5))
                record = sample_record(key, shard, width, height, caption, i)
                sink.write({"__key__": key, IMAGE_EXT: buffer.getvalue(), CAPTION_EXT: caption.encode(),
                            RECORD_EXT: json.dumps(record).encode()})
        paths.append(str(path))
    return paths


def tiny_train_job(shards, output, models: dict, **overrides):
    """A validated TrainJob for the tiny transformer on CPU: no sampling, no lr scaling, light data loading."""
    from pixcap.schemas import load_train_job

    job = {
        "shards": list(shards), "output": str(output), "model": "tiny", "resolution": 256,
        "text_encoder": str(models["t5"]), "vae": str(models["vae"]), "max_steps": 6, "batch_size": 2,
        "lr": 1e-4, "warmup_steps": 2, "ema_decay": 0.9, "shuffle_buffer": 8, "num_workers": 0,
        "checkpoint_every": 3, "log_every": 1, "sampling_prompts": [], "lr_scaling": "none",
    }
    return load_train_job({**job, **overrides})


def damage_shards(good: list, directory) -> dict:
    """Copies of good shards, damaged: one with a corrupt image and a broken KEY.json, and one
    cut in the middle of a member. Returns {"corrupt": path, "truncated": path, "lost": keys}."""
    import tarfile

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    corrupt, truncated = directory / "corrupt-00000.tar", directory / "truncated-00000.tar"
    with tarfile.open(good[0]) as source, tarfile.open(corrupt, "w") as sink:
        names = [m.name for m in source.getmembers()]
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name == names[0] and member.name.endswith(IMAGE_EXT):
                data = data[: len(data) // 3]  # a truncated JPEG
            elif member.name.endswith(RECORD_EXT) and member.name.startswith(names[3].rsplit(".", 1)[0]):
                data = b'{"width": 64, "hei'  # a broken record
            member.size = len(data)
            sink.addfile(member, io.BytesIO(data))
    raw = Path(good[1]).read_bytes()
    with tarfile.open(good[1]) as source:
        middle = source.getmembers()[len(source.getmembers()) // 2]
    truncated.write_bytes(raw[: middle.offset_data + middle.size // 2])
    return {"corrupt": str(corrupt), "truncated": str(truncated)}
