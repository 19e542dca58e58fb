"""Precomputed features: what `pixcap encode` writes beside each sample, and how the trainer reads it back.

Per sample (member names in schemas/records.py):
- KEY.latent.npy: float32 [8, h, w], the VAE posterior at the sample's fitted size: its mean, then its
  log-variance, unscaled (PixArt's extract_features stores mean and std). The trainer draws a fresh
  latent from it at every read with its own seeded generator (latents.sample_posterior).
- KEY.t5.npy: float16 [n, D], T5's output for the n unmasked tokens only (padding is masked out of
  attention anyway); KEY.t5mask.npy: uint8 [120]. Those are the primary caption's (KEY.txt's); on an output
  of several captioners each one's caption has its own, KEY.NAME.t5.npy and KEY.NAME.t5mask.npy, which a
  job's caption_choice reads (data.chosen_text_members).
Per folder: null_caption.npz, the empty caption's T5 features for caption dropout, and the settings the
folder was encoded with. A train job must agree with them: captions cleaned or not, square or aspect
buckets, and the resolution, since each changes what the features are; and the revisions of the T5 and
the VAE that made them (models/revisions.py), since latents decode only with their own VAE and a
transformer trained on one T5's embeddings is sampled with that T5.
"""
from __future__ import annotations

import io
import os

import numpy as np
import torch

from pixcap.schemas import JobError

NULL_CAPTION = "null_caption.npz"
SETTINGS = ("clean_captions", "buckets", "resolution")  # kept in null_caption.npz beside the features
# The models' revisions, kept beside the settings; component -> the subfolders of a pipeline that hold it.
MODEL_COMPONENTS = {"text_encoder": ("text_encoder", "tokenizer"), "vae": ("vae",)}
REVISIONS = tuple(f"{component}_revision" for component in MODEL_COMPONENTS)
STORED = SETTINGS + REVISIONS


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def posterior_bytes(posterior: torch.Tensor) -> bytes:
    """One sample's posterior parameters [8, h, w] -> latent.npy bytes (float32: the std is small, keep it exact)."""
    return npy_bytes(posterior.cpu().numpy().astype(np.float32))


def text_feature_bytes(emb: torch.Tensor, mask: torch.Tensor) -> tuple:
    """One caption's (emb [120, D], mask [120]) -> (t5.npy, t5mask.npy) bytes, keeping the unmasked tokens."""
    n = int(mask.sum())
    return npy_bytes(emb[:n].cpu().numpy().astype(np.float16)), npy_bytes(mask.cpu().numpy().astype(np.uint8))


def pad_text_features(emb: np.ndarray, mask: np.ndarray):
    """emb [n, D] of the unmasked tokens, mask [120] -> float32 [120, D] (zeros after n), long [120]."""
    padded = np.zeros((len(mask), emb.shape[1]), dtype=np.float32)
    padded[: len(emb)] = emb  # padding tokens are masked out of cross-attention, so zeros stand in for them
    return torch.from_numpy(padded), torch.from_numpy(mask.astype(np.int64))


def load_text_features(emb_bytes: bytes, mask_bytes: bytes):
    """Stored t5.npy and t5mask.npy bytes -> float32 [120, D], long [120]."""
    return pad_text_features(npy(emb_bytes), npy(mask_bytes))


def model_revisions(text_encoder: str, vae: str, models_cache: str) -> dict:
    """{text_encoder_revision, vae_revision} of resolved model names (paths or hub ids)."""
    from pixcap.models.revisions import RevisionCache, component_revision

    cache = RevisionCache(models_cache)
    names = {"text_encoder": text_encoder, "vae": vae}
    revisions = {f"{key}_revision": component_revision(names[key], subfolders, cache)
                 for key, subfolders in MODEL_COMPONENTS.items()}
    cache.save()
    return revisions


def write_null_caption(out_dir, emb: torch.Tensor, mask: torch.Tensor, settings: dict) -> None:
    """null_caption.npz: the empty caption's features (emb [1, 120, D], mask [1, 120]), the settings and
    the models' revisions (every key of STORED that `settings` holds)."""
    n = int(mask[0].sum())
    tmp = os.path.join(out_dir, f".{NULL_CAPTION}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, emb=emb[0, :n].cpu().numpy().astype(np.float16), mask=mask[0].cpu().numpy().astype(np.uint8),
                 **{key: np.array(settings[key]) for key in STORED if key in settings})
    os.replace(tmp, os.path.join(out_dir, NULL_CAPTION))


def read_null_caption(file) -> tuple:
    """(emb [120, D], mask [120], settings) from an open null_caption.npz; settings are {} if it has none."""
    with np.load(file, allow_pickle=False) as stored:
        emb, mask = pad_text_features(stored["emb"], stored["mask"])
        settings = {key: stored[key].item() for key in STORED if key in stored}
    return emb, mask, settings


def null_caption_path(null_caption, urls) -> str:
    """The job's null_caption, or null_caption.npz beside the first shard."""
    return null_caption or os.path.join(os.path.dirname(urls[0]), NULL_CAPTION)


def stored_null_caption(path):
    """read_null_caption of the file at `path` (any fsspec URL), or None where there is none."""
    import fsspec

    try:
        with fsspec.open(path, "rb") as f:
            return read_null_caption(f)
    except FileNotFoundError:
        return None


def check_settings(settings: dict, clean_captions: bool, buckets: str, resolutions, where: str) -> None:
    """Refuse features encoded otherwise than a job (or a rerun of encode) would use them."""
    wanted = {"clean_captions": clean_captions, "buckets": buckets}
    for key, value in wanted.items():
        if settings.get(key) != value:
            raise JobError(f"{key}: {where} was encoded with {key}={settings.get(key)!r}, this job has {value!r};"
                           f" encode again with the job's settings")
    if settings.get("resolution") not in resolutions:
        raise JobError(f"resolution: {where} was encoded at {settings.get('resolution')!r}, this job fits images to"
                       f" {', '.join(map(str, resolutions))}; encode again with the job's resolution")


def _same_model(stored: str, mine: str) -> bool:
    """Equal revisions; or the same hub id where one side's cache did not hold it, so its commit is unknown."""
    if stored == mine:
        return True
    if stored.startswith("hub:") and mine.startswith("hub:") and ("@" not in stored or "@" not in mine):
        return stored.partition("@")[0] == mine.partition("@")[0]
    return False


def check_revisions(settings: dict, revisions: dict, where: str) -> None:
    """Refuse features made by another T5 or VAE than the job's. Features from before pixcap recorded
    its models carry none: they are taken, with a warning, as nothing says they differ."""
    for key, mine in revisions.items():
        component = key.removesuffix("_revision")
        stored = settings.get(key)
        if stored is None:
            import logging

            logging.getLogger(__name__).warning(
                f"pixcap: {where} does not record which {component} made its features (encoded by an older"
                f" pixcap); make sure it was this job's {component}")
        elif not _same_model(stored, mine):
            raise JobError(f"{component}: {where} was encoded with {component} {stored}, this job's is {mine};"
                           f" encode again with the job's {component}, or name the one the features were made with")
