"""CLIP: how well a caption fits its image (`clip_score`), and which of its nouns CLIP sees there.

A noun is grounded when the cosine of the image and "a photo of a {noun}" reaches
clip.grounding_threshold. Takes the CPU's crops (CLIP_PIXELS) when the batch has them, and
otherwise runs open_clip's transform on MODEL_IMAGE itself; consumes both. The image is encoded once;
with several captioners each caption gets its own score and grounded nouns (clip_score_long, ...),
and the base columns are the primary's. A caption over CLIP's context is scored by clip.long_captions
(schemas/stages.py: truncate, or the mean over chunks of whole sentences).
"""
from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixcap.schemas import rejects as R
from pixcap.schemas import batch as B
from pixcap.schemas.records import CAPTION, captioner_column
from pixcap.schemas.stages import ClipConfig

from .outcomes import RowOutcomes, error_text, in_chunks
from .preprocess import clip_view

STAGE = "clip"
NOUN_TEMPLATE = "a photo of a {}"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentence_chunks(caption: str, tokens, capacity: int) -> list:
    """The caption whole if tokens(caption) <= capacity; else its sentences packed in order into chunks
    of at most capacity tokens each (a longer sentence is a chunk of its own, which CLIP then truncates)."""
    if tokens(caption) <= capacity:
        return [caption]
    chunks = []
    for sentence in (s for s in SENTENCE_END.split(caption.strip()) if s):
        joined = f"{chunks[-1]} {sentence}" if chunks else sentence
        if chunks and tokens(joined) <= capacity:
            chunks[-1] = joined
        else:
            chunks.append(sentence)
    return chunks or [caption]


def resolve_model_name(model: str) -> str:
    """An open_clip model name; a config JSON path is registered under its file stem."""
    import open_clip

    path = Path(model).expanduser()
    if path.suffix == ".json" and path.is_file():
        open_clip.add_model_config(path)
        return path.stem
    return model


def resolve_pretrained(pretrained: str) -> str:
    """A checkpoint path with ~ expanded (open_clip does not), or the open_clip tag as given."""
    path = Path(pretrained).expanduser()
    return str(path) if path.is_file() else pretrained


def model_label(name: str, pretrained: str) -> str:
    """name:tag, or name:checkpoint-file-name; local folders say nothing about the model."""
    path = Path(pretrained).expanduser()
    return f"{name}:{path.name if path.is_file() else pretrained}"


def unit(features: torch.Tensor) -> torch.Tensor:
    features = features.float()
    return features / features.norm(dim=-1, keepdim=True)


def distinct(items) -> list:
    """Items once each, in first-occurrence order."""
    return list(dict.fromkeys(items))


class ClipStage:
    """open_clip image/caption cosine and grounded nouns, in batches of config.batch_size."""

    def __init__(self, config: ClipConfig, captioners=("",)):
        import open_clip

        self.config = config
        self.captioners = list(captioners)  # their names, the primary first; [""]: a `caption:` job's one
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        name = resolve_model_name(config.model)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            name, pretrained=resolve_pretrained(config.pretrained), device=self.device,
            weights_only=True,  # a checkpoint is a pickle: refuse anything but tensors and plain values
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)  # truncates to the text context
        # Tokens a text may have inside the context: all but the start and end tokens.
        self.capacity = getattr(self.tokenizer, "context_length", 77) - 2
        self.label = model_label(name, config.pretrained)
        self.view = clip_view(self.model)

    def autocast(self):
        # bf16 on the GPU for speed; the CPU runs fp32 where bf16 would be slow and lossy.
        if self.device == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def encode_texts(self, texts: list) -> torch.Tensor:
        """Unit text embeddings, computed in batches of config.batch_size."""
        size = self.config.batch_size
        parts = []
        for start in range(0, len(texts), size):
            tokens = self.tokenizer(texts[start:start + size]).to(self.device)
            with self.autocast():
                parts.append(unit(self.model.encode_text(tokens)))
        return torch.cat(parts) if parts else torch.empty(0, 0)

    @torch.inference_mode()
    def encode_images(self, images: list, cropped: bool = False) -> torch.Tensor:
        """Unit image embeddings of HxWx3 uint8 arrays, through the model's eval transform; with
        `cropped`, of the model's own square crops (model_inputs'), normalised on the device."""
        if cropped:
            for crop in images:
                if crop.shape != (self.view.size, self.view.size, 3):
                    raise ValueError(f"a crop of {crop.shape}, not {self.view.size}x{self.view.size}x3")
            pixels = self.view.pixel_values(images, self.device)
        else:
            pixels = torch.stack([self.preprocess(Image.fromarray(np.asarray(im, dtype=np.uint8))) for im in images])
        with self.autocast():
            return unit(self.model.encode_image(pixels.to(self.device)))

    def token_count(self, text: str) -> int:
        """open_clip's BPE tokens of text, without the start and end tokens."""
        encode = getattr(self.tokenizer, "encode", None)
        if encode is None:  # a hub tokenizer: its own count, start and end included
            return len(self.tokenizer.tokenizer(text)["input_ids"]) - 2
        return len(encode(text))

    def caption_scores(self, image_vectors: torch.Tensor, captions: list) -> list:
        """Each caption's cosine with its image (the rows of image_vectors), by clip.long_captions."""
        if self.config.long_captions == "truncate":
            return (image_vectors * self.encode_texts(list(captions))).sum(-1).tolist()
        chunked = [sentence_chunks(caption, self.token_count, self.capacity) for caption in captions]
        vectors = self.encode_texts([chunk for chunks in chunked for chunk in chunks])
        scores, start = [], 0
        for image_vector, chunks in zip(image_vectors, chunked):
            scores.append(float((vectors[start:start + len(chunks)] @ image_vector).mean()))
            start += len(chunks)
        return scores

    def score_rows(self, rows: list, images, captions, nouns, noun_vectors: dict, cropped: bool = False) -> dict:
        """{row: (clip_score, grounded nouns, image embedding)} for rows scored in one forward pass."""
        image_vectors = self.encode_images([np.asarray(images[i], dtype=np.uint8) for i in rows], cropped)
        scores = self.caption_scores(image_vectors, [captions[i] or "" for i in rows])
        return {row: (score, self.grounded(image_vector, nouns[row], noun_vectors), image_vector)
                for row, image_vector, score in zip(rows, image_vectors, scores)}

    def grounded(self, image_vector: torch.Tensor, nouns, noun_vectors: dict) -> list:
        return [noun for noun in distinct(map(str, nouns))
                if float(image_vector @ noun_vectors[noun]) >= self.config.grounding_threshold]

    def __call__(self, batch: dict) -> dict:
        cropped = B.CLIP_PIXELS in batch
        images = batch[B.CLIP_PIXELS] if cropped else batch[B.MODEL_IMAGE]
        columns = {name: (batch[captioner_column(CAPTION, name)], batch[captioner_column(B.NOUNS, name)])
                   for name in self.captioners}
        rows = RowOutcomes(batch, STAGE)
        live = rows.live_rows()

        # Each distinct noun is encoded once for the whole batch, whichever captions name it.
        noun_list = distinct(str(noun) for _, nouns in columns.values() for i in live for noun in nouns[i])
        noun_vectors = dict(zip(noun_list, self.encode_texts([NOUN_TEMPLATE.format(n) for n in noun_list])))

        results = {}  # row -> {name: (score, grounded)}, and the image vector under None

        def score_chunk(chunk: list) -> None:
            image_vectors = self.encode_images([np.asarray(images[i], dtype=np.uint8) for i in chunk], cropped)
            found = {i: {None: vector} for i, vector in zip(chunk, image_vectors)}
            for name, (captions, nouns) in columns.items():
                scores = self.caption_scores(image_vectors, [captions[i] or "" for i in chunk])
                for i, vector, score in zip(chunk, image_vectors, scores):
                    found[i][name] = (score, self.grounded(vector, nouns[i], noun_vectors))
            results.update(found)

        in_chunks(live, self.config.batch_size, score_chunk, lambda i, e: rows.reject(i, R.CLIP_ERROR, error_text(e)))

        out = {k: v for k, v in batch.items() if k not in (B.MODEL_IMAGE, B.CLIP_PIXELS)}
        out.update(rows.columns())
        for name in self.captioners:
            scored = [results[i][name] if i in results else (math.nan, []) for i in range(len(rows))]
            targets = [name, ""] if name and name == self.captioners[0] else [name]  # the primary's: the base columns too
            for target in targets:
                out[captioner_column(B.CLIP_SCORE, target)] = np.array([score for score, _ in scored], dtype=np.float32)
                out[captioner_column(B.GROUNDED_NOUNS, target)] = [list(grounded) for _, grounded in scored]
                out[captioner_column(B.N_GROUNDED, target)] = [len(grounded) for _, grounded in scored]
        # float16, as clip-retrieval stores them: half the bytes, and cosines to 3 decimals.
        out[B.CLIP_EMBEDDING] = [results[i][None].cpu().numpy().astype(np.float16).tobytes() if i in results else b""
                                 for i in range(len(rows))]
        out[B.CLIP_MODEL] = [self.label if i in results else "" for i in range(len(rows))]
        return out
