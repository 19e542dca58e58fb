"""`pixcap encode SHARDS... --output DIR`: precompute VAE posteriors and T5 embeddings beside every sample.

Each input shard becomes DIR/<same name>.tar holding every original member unchanged plus the
feature members features.py describes (the VAE posterior at the sample's fitted size, and T5's
output for the caption as cleaned for training: the primary caption's as KEY.t5.npy, and every named
captioner's as KEY.NAME.t5.npy, so that a job's caption_choice can choose among them);
DIR/null_caption.npz holds the empty caption's features and the settings. Inputs are never modified. Resumable like `pixcap run`: a shard is written
to a temporary name and renamed, and finished shards are skipped.
"""
from __future__ import annotations

import logging
import os
import tarfile
import typing
from collections import defaultdict
from pathlib import Path

import torch

from pixcap.models.resolve import resolve_model
from pixcap.schemas import JobError
from pixcap.schemas.records import (
    CAPTION, IMAGE_EXT, LATENT_EXT, T5_EMBEDDING_EXT, T5_MASK_EXT, caption_feature_members, caption_member,
    is_feature_member,
)
from pixcap.schemas.train_job import FilterConfig
from pixcap.schemas.train_skips import NO_IMAGE_TO_ENCODE

from .caption_choice import named_captions
from .data import PrepareSamples
from .shard_read import expand_shards, one_line, tar_samples
from .training_log import quiet_libraries
from .features import (NULL_CAPTION, check_revisions, check_settings, model_revisions, posterior_bytes,
                       read_null_caption, text_feature_bytes, write_null_caption)

logger = logging.getLogger(__name__)
CHUNK = 64  # samples read before encoding, so each bucket gets batches


class ShardEncoder:
    """Adds posteriors and T5 features to the samples of one shard at a time."""

    def __init__(self, text_encoder: str, vae: str, settings: dict, batch_size: int, device):
        from .latents import LatentEncoder
        from .text import TextEncoder

        self.text = TextEncoder(text_encoder, device, clean_captions=settings["clean_captions"])
        self.vae = LatentEncoder(vae, device)
        self.batch_size = batch_size
        # No filters: every sample that fits is kept. One that would need enlarging is skipped, as in training.
        self.prepare = PrepareSamples(settings["buckets"], [settings["resolution"]], FilterConfig())

    def posteriors(self, pixels: list) -> list:
        """Pixel tensors (of mixed fitted sizes) -> latent.npy bytes, batched by size."""
        out = [None] * len(pixels)
        by_size = defaultdict(list)
        for i, p in enumerate(pixels):
            by_size[p.shape].append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                encoded = self.vae.posterior(torch.stack([pixels[i] for i in batch]))
                for i, posterior in zip(batch, encoded):
                    out[i] = posterior_bytes(posterior)
        return out

    def captions(self, captions: list) -> list:
        """Captions -> (t5.npy, t5mask.npy) bytes; each distinct text is encoded once (KEY.txt is a copy of
        one captioner's caption, and T5 pads every caption to the same length, so its batch does not matter)."""
        unique = list(dict.fromkeys(captions))
        features = []
        for start in range(0, len(unique), self.batch_size):
            emb, mask = self.text.encode(unique[start : start + self.batch_size])
            features += [text_feature_bytes(e, m) for e, m in zip(emb, mask)]
        by_text = dict(zip(unique, features))
        return [by_text[caption] for caption in captions]

    def encode_chunk(self, raw: list) -> list:
        """Raw samples -> the same samples with the feature members added (skipped ones dropped): the
        posterior, the primary caption's T5 features, and each named captioner's (KEY.NAME.t5.npy)."""
        # Features already present are dropped first, so a re-encode always starts from the stored image.
        raw = [{k: v for k, v in s.items() if not is_feature_member(k)} for s in raw]
        kept = [(s, p) for s, p in ((s, self.prepare.prepare_or_skip(s)) for s in raw) if p is not None]
        posteriors = self.posteriors([p["pixels"] for _, p in kept])
        # (sample index, members) of every caption to encode: the primary, then the named captioners'.
        slots, texts = [], []
        for i, (s, p) in enumerate(kept):
            slots.append((i, (T5_EMBEDDING_EXT, T5_MASK_EXT)))
            texts.append(p[CAPTION])
            for name in named_captions(s):
                slots.append((i, caption_feature_members(name)))
                texts.append(s[caption_member(name)].decode("utf-8"))
        out = [{**s, LATENT_EXT: posterior} for (s, _), posterior in zip(kept, posteriors)]
        for (i, members), features in zip(slots, self.captions(texts)):
            out[i].update(zip(members, features))
        return out

    def encode_shard(self, url: str, out_path: Path) -> int:
        """Write url's samples with features to out_path (via a temporary name); return the sample count.

        A shard that cannot be read to its end raises, and nothing is written for it: a rerun
        tries it again rather than taking a partial shard for a finished one.
        """
        import webdataset as wds

        tmp = out_path.with_name(f".{out_path.name}.tmp")
        count = 0
        try:
            with wds.TarWriter(str(tmp)) as sink:
                chunk = []
                for sample in tar_samples([{"url": url}]):
                    if IMAGE_EXT in sample:
                        chunk.append(sample)
                    else:
                        self.prepare.skipped[NO_IMAGE_TO_ENCODE] += 1
                    if len(chunk) == CHUNK:
                        count += self.write(sink, chunk)
                        chunk = []
                count += self.write(sink, chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, out_path)
        return count

    def write(self, sink, chunk: list) -> int:
        samples = self.encode_chunk(chunk) if chunk else []
        for sample in samples:
            sink.write({k: v for k, v in sample.items() if k == "__key__" or not k.startswith("__")})
        return len(samples)


def check_folder(out_dir: Path, settings: dict) -> None:
    """A folder holds features of one kind: refuse to add shards encoded with other settings."""
    if (out_dir / NULL_CAPTION).exists():
        with open(out_dir / NULL_CAPTION, "rb") as f:
            check_settings(read_null_caption(f)[2], clean_captions=settings["clean_captions"],
                           buckets=settings["buckets"], resolutions=[settings["resolution"]], where=f"output {out_dir}")


def encode_shards(shards: typing.Sequence[str], output: str, text_encoder: str, vae: str, models_cache: str,
                  resolution: int = 256, buckets: str = "square", clean_captions: bool = True,
                  batch_size: int = 16) -> typing.List[str]:
    """Encode every shard not already in `output`; return the URLs of shards that could not be read.

    resolution and buckets fit each image as a train job with the same keys does (square, or the nearest
    bucket of that table); clean_captions cleans captions before T5 as the job's key of that name does.
    """
    if "://" in output and not output.startswith("file://"):
        raise JobError(f"--output {output}: encode writes to a local or mounted folder; "
                       "its inputs may be on object storage")
    urls = expand_shards(shards)
    out_dir = Path(output.removeprefix("file://"))
    names = [url.rstrip("/").rsplit("/", 1)[-1] for url in urls]
    if len(set(names)) != len(names):
        raise JobError("shards: two inputs share a file name; encode them into separate --output folders")
    if any(not name.endswith(".tar") for name in names):
        raise JobError("shards: every input must be a .tar shard")
    settings = {"clean_captions": clean_captions, "buckets": buckets, "resolution": resolution}
    check_folder(out_dir, settings)
    todo = [(url, out_dir / name) for url, name in zip(urls, names) if not (out_dir / name).exists()]
    logger.info(f"{len(urls) - len(todo)} of {len(urls)} shards already encoded")
    if not todo and (out_dir / NULL_CAPTION).exists():
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quiet_libraries()
    text_encoder, vae = resolve_model("text_encoder", text_encoder, models_cache), resolve_model("vae", vae, models_cache)
    encoder = ShardEncoder(text_encoder, vae, settings, batch_size, device)
    revisions = model_revisions(text_encoder, vae, models_cache)  # once loaded: a hub model's commit is cached now
    if (out_dir / NULL_CAPTION).exists():  # the folder's other shards were made by these models, or none are added
        with open(out_dir / NULL_CAPTION, "rb") as f:
            check_revisions(read_null_caption(f)[2], revisions, where=f"output {out_dir}")
    write_null_caption(out_dir, *encoder.text.null(), {**settings, **revisions})
    broken = []
    for url, out_path in todo:
        encoder.prepare.skipped.clear()
        try:
            count = encoder.encode_shard(url, out_path)
        except (OSError, EOFError, tarfile.TarError, ValueError) as e:  # the shard, not the encoder
            broken.append(url)
            logger.error(f"pixcap: cannot read {url}: {one_line(e)}; not encoded")
            continue
        skipped = dict(encoder.prepare.skipped)
        logger.info(f"{out_path}: {count} samples" + (f", skipped {skipped}" if skipped else ""))
    if broken:
        logger.error(f"pixcap: failed: {len(broken)} of {len(todo)} shards could not be read; the others are"
                     f" encoded, and a rerun retries only these")
    return broken
