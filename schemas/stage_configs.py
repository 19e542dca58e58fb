"""Each pipeline stage's job keys: its config class (fields, defaults and what they mean), which of its keys
change only speed, which must be positive, and which take one of a few values. The registry
(schemas/stages.py) names each stage's config; `from pixcap.schemas.stages import CaptionConfig` still works.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass

from .models import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from .records import CANNY

# -- each stage's job keys ----------------------------------------------------------------------
# Besides its fields, a config says which of its keys change only speed (`speed_keys`: not part of
# an output's fingerprint), which numbers must be positive, and which keys take one of a few values
# (`choices`; a `backend` key's values are its stage's backends below).

# The caption backends by name (schemas/stages.py: CAPTION_BACKENDS says what each runs).
HF_BACKEND, VLLM_BACKEND, SIDECAR_BACKEND = "hf", "vllm", "sidecar"

DEFAULT_PROMPT = "Describe this image and its style in a very detailed manner"
POOL_SPEED_KEYS = ("batch_size", "actors", "gpus_per_actor")  # how an actor pool runs, never what it writes


class PoolConfig:
    """What an actor-pool stage's config says of its keys, unless it says otherwise."""
    speed_keys: typing.ClassVar[tuple] = POOL_SPEED_KEYS
    positive: typing.ClassVar[tuple] = ("batch_size", "actors")
    choices: typing.ClassVar[dict] = {}


@dataclass
class DecodeConfig:
    max_side: int = 1024  # longest side of the stored image; larger ones are re-encoded
    max_pixels: int = 100_000_000  # refused before a full decode (decompression bombs)
    max_file_bytes: int = 256 * 2**20  # a bigger file or tar member is refused unread (memory)
    min_side: int = 32  # shorter images are rejected as too_small
    max_aspect_ratio: float = 8.0  # long side / short side; beyond is rejected as bad_aspect
    model_side: int = 336  # short side of the RGB image handed to the models
    jpeg_quality: int = 95  # for re-encoded stored images

    speed_keys: typing.ClassVar[tuple] = ()
    positive: typing.ClassVar[tuple] = ("max_side", "max_pixels", "max_file_bytes", "model_side")
    choices: typing.ClassVar[dict] = {}


@dataclass
class CaptionConfig:
    # A caption backend (schemas/stages.py: CAPTION_BACKENDS): hf, any image-text-to-text model through transformers;
    # vllm, through vLLM's engine; sidecar, existing KEY.txt captions.
    backend: str = HF_BACKEND
    # Required where the backend runs a model: a path or a hub name (llava-hf/llava-1.5-7b-hf); tiny:llava,
    # the random test model, only where a job names it. No default: a forgotten key must not caption with babble.
    model: str = ""
    prompt: str = DEFAULT_PROMPT
    max_new_tokens: int = 120
    batch_size: int = 8
    actors: int = 1  # captioning actors; each loads the model once
    gpus_per_actor: float = 0.0  # > 0 asks Ray for GPUs and runs bf16 + SDPA on CUDA
    trust_remote_code: bool = False
    # hf: a static KV cache lets transformers compile the decoding step; auto takes it on CUDA,
    # where it is faster, and the dynamic cache on the CPU. Both give the same greedy captions.
    kv_cache: str = "auto"

    speed_keys: typing.ClassVar[tuple] = (*POOL_SPEED_KEYS, "kv_cache")
    positive: typing.ClassVar[tuple] = ("max_new_tokens", "batch_size", "actors")
    choices: typing.ClassVar[dict] = {"kv_cache": ("auto", "static", "dynamic")}  # backend: from the registry


@dataclass
class ModelPoolConfig(PoolConfig):
    """A CPU actor pool around one model: which model, and how many rows a call takes."""
    model: str = ""
    batch_size: int = 256
    actors: int = 1


@dataclass
class NounsConfig(ModelPoolConfig):
    model: str = "en_core_web_sm"  # a spaCy pipeline (its package name or folder)


@dataclass
class ClipConfig(PoolConfig):
    model: str = DEFAULT_CLIP_MODEL  # an open_clip name, a config JSON path, or tiny:clip (tests)
    pretrained: str = DEFAULT_CLIP_PRETRAINED  # an open_clip tag, a checkpoint path, or tiny:clip (tests)
    grounding_threshold: float = 0.2  # cosine of image and "a photo of a {noun}"
    # A caption longer than CLIP's 77 tokens. truncate: CLIP sees its first 75 tokens (open_clip's tokenizer
    # cuts the rest). sentences: its sentences are packed, in order, into chunks of at most 75 tokens, and
    # its score is the mean of the chunks' cosines with the image (a sentence over 75 tokens is cut alone).
    # A caption that fits is scored whole either way.
    long_captions: str = "truncate"
    batch_size: int = 32
    actors: int = 1
    gpus_per_actor: float = 0.0

    choices: typing.ClassVar[dict] = {"long_captions": ("truncate", "sentences")}
    # Keys added after outputs were made: at this value they stay out of the fingerprint, so an output
    # made before them keeps its own (output/fingerprint.py).
    added_later: typing.ClassVar[dict] = {"long_captions": "truncate"}


@dataclass
class AestheticConfig(ModelPoolConfig):
    # model: "" is off. Else LAION's improved aesthetic predictor as a state dict (a .pth loaded tensors
    # only, or .safetensors), e.g. sac+logos+ava1-l14-linearMSE.pth with clip ViT-L-14/openai;
    # or tiny:aesthetic (for tiny:clip). Scores the CLIP image embedding: stages/aesthetic.py.
    pass


@dataclass
class ClipNsfwConfig(AestheticConfig):
    # "" is off. Else LAION's CLIP-based NSFW head, its PyTorch port as a state dict (a .pth loaded tensors
    # only, or .safetensors): clip_ViT-L-14_openai_binary_nsfw_head.pth with clip ViT-L-14/openai; or
    # tiny:clip_nsfw (for tiny:clip). The probability of NSFW from the CLIP image embedding: stages/clip_nsfw.py.
    pass


@dataclass
class ControlConfig:
    # Control maps for a ControlNet, written beside each sample as KEY.<kind>.png (stages/control.py).
    # [] is off; "canny": Canny edges of the stored image (scikit-image; no weights).
    kinds: typing.List[str] = dataclasses.field(default_factory=list)
    canny_sigma: float = 2.0  # Gaussian blur before the gradient, in stored-image pixels
    # Hysteresis thresholds as quantiles of the image's gradient magnitude (scikit-image's use_quantiles):
    # the same share of pixels is edge in a dim photo as in a bright one.
    canny_low: float = 0.8
    canny_high: float = 0.9

    speed_keys: typing.ClassVar[tuple] = ()
    positive: typing.ClassVar[tuple] = ("canny_sigma",)
    choices: typing.ClassVar[dict] = {}

    def problems(self) -> typing.List[str]:
        """What is wrong with these keys, one line each (the job is refused before anything runs)."""
        problems = [f"kinds: {kind!r} is not a control map pixcap makes ({', '.join(CONTROL_KINDS)})"
                    for kind in self.kinds if kind not in CONTROL_KINDS]
        if len(set(self.kinds)) < len(self.kinds):
            problems.append(f"kinds: a kind is named twice ({', '.join(self.kinds)})")
        if not 0.0 <= self.canny_low <= self.canny_high <= 1.0:
            problems.append(f"canny_low and canny_high: quantiles with 0 <= low <= high <= 1, "
                            f"got {self.canny_low} and {self.canny_high}")
        return problems


CONTROL_KINDS = (CANNY,)  # the control maps the control stage makes (stages/control.py)


VIEWS = ("crop", "pad", "native")
QUOTE_SIDECAR = "sidecar"  # {sidecar} in a captioner's prompt: the sample's own caption (alt-text, KEY.txt)
CAPTIONER_NAME = re.compile(r"^[a-z][a-z0-9]{0,31}$")  # a column suffix and a shard member: no "_", no "."
COLUMN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # a classifier's column, as SQL takes it unquoted


@dataclass
class CaptionerConfig(CaptionConfig):
    """One of a job's `captioners:`: caption's keys, and these. The first one is the primary caption."""
    # Names its columns (caption_NAME, clip_score_NAME, ...) and its shard member KEY.NAME.txt. A later
    # captioner's prompt may quote its caption as {NAME}; {sidecar} quotes the input's own caption.
    name: str = ""
    # How the model sees the image. crop: its processor's resize and centre crop (llava-hf), made on the
    # CPU; pad: padded to a square with the image's mean colour first, as the original LLaVA-1.5 does;
    # native: the model's own processor on the whole image (Qwen2-VL's dynamic resolution). crop and pad
    # need a processor with one fixed square size.
    view: str = "crop"
    # 0: greedy. Above 0: sampled (temperature, then top_p), seeded per sample from its key and the
    # captioner's name, so a resumed or repeated run writes the very same captions.
    temperature: float = 0.0
    top_p: float = 1.0

    positive: typing.ClassVar[tuple] = (*CaptionConfig.positive, "top_p")
    choices: typing.ClassVar[dict] = {**CaptionConfig.choices, "view": VIEWS}


@dataclass
class ClassifierConfig(PoolConfig):
    """One of a job's `classifiers:`: any transformers image-classification model, one label's
    probability stored as a float32 column (stages/classify.py)."""
    column: str = ""  # the stats column, e.g. nsfw_score
    model: str = ""  # e.g. Falconsai/nsfw_image_detection; tiny:nsfw (tests)
    label: str = ""  # the label whose probability is stored, one of the model's config.id2label (nsfw)
    batch_size: int = 32
    actors: int = 1
    gpus_per_actor: float = 0.0
    trust_remote_code: bool = False


@dataclass
class T5TokensConfig(PoolConfig):
    # "" is off. Else a T5 tokenizer (a folder or a hub name: DeepFloyd/t5-v1_1-xxl, PixArt's; tiny:t5 in
    # tests): each caption's exact token count, </s> included, and whether it is over max_length.
    tokenizer: str = ""
    max_length: int = 120  # PixArt-alpha's T5 max_length: the trainer cuts longer captions
    batch_size: int = 256
    actors: int = 1

    positive: typing.ClassVar[tuple] = ("max_length", "batch_size", "actors")
