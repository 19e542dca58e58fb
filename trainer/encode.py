"""`pixcap encode SHARDS... --output DIR`: precompute VAE latents and T5 embeddings beside every sample.

Each input shard becomes DIR/<same name>.tar holding every original member unchanged plus
KEY.latent.npy (float16 [4, h, w], scaled, at the sample's bucket for --resolution),
KEY.t5.npy (float16 [n, D], only the n unmasked tokens: padding is masked out of attention anyway) and
KEY.t5mask.npy (uint8 [120]). float16 halves the space; T5-XXL features are still ~1 MB a caption.
DIR/null_caption.npz holds the empty caption's features for caption dropout. Inputs are never modified.
Resumable like `pixcap run`: a shard is written to a temporary name and renamed, finished shards are skipped.
"""
from __future__ import annotations

import io
import os
import sys
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from pixcap.schemas import JobError
from pixcap.schemas.records import IMAGE_EXT, LATENT_EXT, T5_EMBEDDING_EXT, T5_MASK_EXT
from pixcap.schemas.train_job import FilterConfig

from .data import NULL_CAPTION, PrepareSamples, expand_shards, one_line, tar_samples
from pixcap.models.resolve import resolve_model

CHUNK = 64  # samples read before encoding, so each bucket gets batches
FEATURE_EXTS = (LATENT_EXT, T5_EMBEDDING_EXT, T5_MASK_EXT)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def text_features(emb: torch.Tensor, mask: torch.Tensor) -> tuple:
    """One caption's (emb [120, D], mask [120]) -> (t5.npy, t5mask.npy) bytes, keeping the unmasked tokens."""
    n = int(mask.sum())
    return npy_bytes(emb[:n].cpu().numpy().astype(np.float16)), npy_bytes(mask.cpu().numpy().astype(np.uint8))


class ShardEncoder:
    """Adds latents and T5 features to the samples of one shard at a time."""

    def __init__(self, text_encoder: str, vae: str, resolution: int, batch_size: int, seed: int, device):
        from .latents import LatentEncoder
        from .text import TextEncoder

        self.text = TextEncoder(text_encoder, device)
        self.vae = LatentEncoder(vae, device)
        self.batch_size, self.device = batch_size, device
        self.prepare = PrepareSamples([resolution], FilterConfig())  # no filters: every sample is kept
        self.generator = torch.Generator(device).manual_seed(seed)

    def null_caption(self) -> dict:
        emb, mask = self.text.null()
        n = int(mask[0].sum())
        return {"emb": emb[0, :n].cpu().numpy().astype(np.float16), "mask": mask[0].cpu().numpy().astype(np.uint8)}

    def latents(self, pixels: list) -> list:
        """Pixel tensors (of mixed bucket sizes) -> latent.npy bytes, batched by size."""
        out = [None] * len(pixels)
        by_size = defaultdict(list)
        for i, p in enumerate(pixels):
            by_size[p.shape].append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                encoded = self.vae.encode(torch.stack([pixels[i] for i in batch]), self.generator)
                for i, latent in zip(batch, encoded):
                    out[i] = npy_bytes(latent.cpu().numpy().astype(np.float16))
        return out

    def captions(self, captions: list) -> list:
        """Captions -> (t5.npy, t5mask.npy) bytes."""
        out = []
        for start in range(0, len(captions), self.batch_size):
            emb, mask = self.text.encode(captions[start : start + self.batch_size])
            out += [text_features(e, m) for e, m in zip(emb, mask)]
        return out

    def encode_chunk(self, raw: list) -> list:
        """Raw samples -> the same samples with the three feature members added (unreadable ones dropped)."""
        # Features already present are dropped first, so a re-encode always starts from the stored image.
        raw = [{k: v for k, v in s.items() if k not in FEATURE_EXTS} for s in raw]
        kept = [(s, p) for s, p in ((s, self.prepare.prepare_or_skip(s)) for s in raw) if p is not None]
        latents = self.latents([p["pixels"] for _, p in kept])
        texts = self.captions([p["caption"] for _, p in kept])
        return [{**s, LATENT_EXT: latent, T5_EMBEDDING_EXT: t5, T5_MASK_EXT: t5mask}
                for (s, _), latent, (t5, t5mask) in zip(kept, latents, texts)]

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
                        self.prepare.skipped["no_image"] += 1
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


def encode_command(args) -> int:
    """`pixcap encode SHARDS... --output DIR`: encode every shard not already in DIR."""
    urls = expand_shards(args.shards)
    out_dir = Path(args.output)
    names = [url.rstrip("/").rsplit("/", 1)[-1] for url in urls]
    if len(set(names)) != len(names):
        raise JobError("shards: two inputs share a file name; encode them into separate --output folders")
    if any(not name.endswith(".tar") for name in names):
        raise JobError("shards: every input must be a .tar shard")
    todo = [(url, out_dir / name) for url, name in zip(urls, names) if not (out_dir / name).exists()]
    print(f"{len(urls) - len(todo)} of {len(urls)} shards already encoded")
    if not todo and (out_dir / NULL_CAPTION).exists():
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder = ShardEncoder(resolve_model("text_encoder", args.text_encoder, args.models_cache),
                           resolve_model("vae", args.vae, args.models_cache),
                           args.resolution, args.batch_size, args.seed, device)
    null_tmp = out_dir / f".{NULL_CAPTION}.tmp"
    with open(null_tmp, "wb") as f:
        np.savez(f, **encoder.null_caption())
    os.replace(null_tmp, out_dir / NULL_CAPTION)
    broken = []
    for url, out_path in todo:
        encoder.prepare.skipped.clear()
        try:
            count = encoder.encode_shard(url, out_path)
        except (OSError, EOFError, tarfile.TarError, ValueError) as e:  # the shard, not the encoder
            broken.append(url)
            print(f"pixcap: cannot read {url}: {one_line(e)}; not encoded", file=sys.stderr)
            continue
        skipped = dict(encoder.prepare.skipped)
        print(f"{out_path}: {count} samples" + (f", skipped {skipped}" if skipped else ""))
    if broken:
        print(f"pixcap: failed: {len(broken)} of {len(todo)} shards could not be read; the others are"
              f" encoded, and a rerun retries only these", file=sys.stderr)
        return 1
    return 0
