"""The sample record: one row of stats/*.parquet and the body of each shard's KEY.json.

Every column name of the record is defined here, once; the stages, the writer, `pixcap stats`
and the trainer import these names.
"""
import pyarrow as pa

KEY = "key"
SHARD = "shard"
SOURCE = "source"  # input URI + "::" + member path
SHA256 = "sha256"  # of the original bytes
FORMAT = "format"  # detected from bytes: jpeg, png, webp, ...
WIDTH = "width"  # of the stored image
HEIGHT = "height"
ORIG_WIDTH = "orig_width"  # of the original, upright
ORIG_HEIGHT = "orig_height"
PASSTHROUGH = "passthrough"  # stored bytes are the original bytes
CAPTION = "caption"
CAPTION_MODEL = "caption_model"
NOUNS = "nouns"
N_NOUNS = "n_nouns"
CLIP_SCORE = "clip_score"
GROUNDED_NOUNS = "grounded_nouns"
N_GROUNDED = "n_grounded"
CLIP_MODEL = "clip_model"
AESTHETIC_SCORE = "aesthetic_score"  # LAION's improved aesthetic predictor on the CLIP image embedding; null when not run
NSFW_CLIP_SCORE = "nsfw_clip_score"  # LAION's CLIP-based NSFW head on the CLIP image embedding (clip_nsfw stage)

# Columns every written sample carries, in the order they are stored.
SAMPLE_SCHEMA = pa.schema(
    [
        pa.field(KEY, pa.string(), nullable=False),
        pa.field(SHARD, pa.string(), nullable=False),
        pa.field(SOURCE, pa.string(), nullable=False),
        pa.field(SHA256, pa.string(), nullable=False),
        pa.field(FORMAT, pa.string()),
        pa.field(WIDTH, pa.int32()),
        pa.field(HEIGHT, pa.int32()),
        pa.field(ORIG_WIDTH, pa.int32()),
        pa.field(ORIG_HEIGHT, pa.int32()),
        pa.field(PASSTHROUGH, pa.bool_()),
        pa.field(CAPTION, pa.string()),
        pa.field(CAPTION_MODEL, pa.string()),
        pa.field(NOUNS, pa.list_(pa.string())),
        pa.field(N_NOUNS, pa.int32()),
        pa.field(CLIP_SCORE, pa.float32()),
        pa.field(GROUNDED_NOUNS, pa.list_(pa.string())),
        pa.field(N_GROUNDED, pa.int32()),
        pa.field(CLIP_MODEL, pa.string()),
        pa.field(AESTHETIC_SCORE, pa.float32()),
    ]
)
SAMPLE_COLUMNS = SAMPLE_SCHEMA.names

# -- columns a job adds to its output's record (one schema per output: the job's, fixed by its fingerprint) --
# Each named captioner has its own columns, the base column's name + "_" + its name (caption_long,
# clip_score_long, nouns_long, ...); the base columns above repeat the primary (first) captioner's, so every
# reader of one caption still works. A field's metadata says whose it is, and which shard member it becomes.
CAPTIONER_META = b"pixcap.captioner"  # field metadata: the captioner the column belongs to
MEMBER_META = b"pixcap.member"  # field metadata: the shard member suffix a text column is also written as
SCORE_META = b"pixcap.score"  # field metadata: a classifier's probability column (b"classifier")
T5_TOKENS = "t5_tokens"  # the caption's exact T5 token count, </s> included (t5_tokens stage)
T5_TRUNCATED = "t5_truncated"  # more T5 tokens than the trainer's max_length (PixArt: 120)
CAPTIONER_BASES = (CAPTION, CAPTION_MODEL, NOUNS, N_NOUNS, CLIP_SCORE, GROUNDED_NOUNS, N_GROUNDED)
T5_BASES = (T5_TOKENS, T5_TRUNCATED)
_BASE_TYPES = {CAPTION: pa.string(), CAPTION_MODEL: pa.string(), NOUNS: pa.list_(pa.string()), N_NOUNS: pa.int32(),
               CLIP_SCORE: pa.float32(), GROUNDED_NOUNS: pa.list_(pa.string()), N_GROUNDED: pa.int32(),
               T5_TOKENS: pa.int32(), T5_TRUNCATED: pa.bool_()}


def captioner_column(base: str, name: str) -> str:
    """A captioner's own column: caption_long for (caption, long); the base column itself for name ""
    (the single captioner of a `caption:` job)."""
    return f"{base}_{name}" if name else base


def caption_member(name: str) -> str:
    """The shard member suffix of a named captioner's caption: KEY.long.txt."""
    return f"{name}.{CAPTION_EXT}"


def captioner_fields(name: str, bases=CAPTIONER_BASES) -> list:
    """The record fields of a named captioner (its caption also becomes the member KEY.NAME.txt)."""
    fields = []
    for base in bases:
        metadata = {CAPTIONER_META: name.encode()}
        if base == CAPTION:
            metadata[MEMBER_META] = caption_member(name).encode()
        fields.append(pa.field(captioner_column(base, name), _BASE_TYPES[base], metadata=metadata))
    return fields


def t5_fields(names: list) -> list:
    """t5_tokens and t5_truncated for the primary caption, then for each named captioner."""
    fields = [pa.field(base, _BASE_TYPES[base]) for base in T5_BASES]
    return fields + [field for name in names if name for field in captioner_fields(name, T5_BASES)]


def score_field(column: str) -> pa.Field:
    """A classifier's column: one label's probability, float32 (null where the image was not scored)."""
    return pa.field(column, pa.float32(), metadata={SCORE_META: b"classifier"})


def score_columns(schema: pa.Schema) -> list:
    """The classifiers' columns a stats schema holds, in order."""
    return [field.name for field in schema if field.metadata and SCORE_META in field.metadata]


def record_schema(extra_fields=()) -> pa.Schema:
    """SAMPLE_SCHEMA, then the columns the job's stages add (schemas/stages.py: record_schema(job))."""
    return pa.schema([*SAMPLE_SCHEMA, *extra_fields])


def captioners_of(schema: pa.Schema) -> list:
    """The named captioners whose columns a stats schema holds, in order ([] for a `caption:` output)."""
    names = []
    for field in schema:
        owner = (field.metadata or {}).get(CAPTIONER_META)
        if owner is not None and owner.decode() not in names:
            names.append(owner.decode())
    return names

# Shard members: KEY.jpg (the stored image), KEY.txt (the caption), KEY.json (the record).
IMAGE_EXT = "jpg"
CAPTION_EXT = "txt"
RECORD_EXT = "json"

# Members `pixcap encode` adds beside a sample; declared here so both sides agree.
LATENT_EXT = "latent.npy"  # the VAE posterior, float32 [8, h, w]: mean, then log-variance
T5_EMBEDDING_EXT = "t5.npy"
T5_MASK_EXT = "t5mask.npy"


def caption_feature_members(name: str) -> tuple:
    """The members holding T5's features of a named captioner's caption (KEY.long.t5.npy, KEY.long.t5mask.npy);
    the primary caption's (KEY.txt's) are T5_EMBEDDING_EXT and T5_MASK_EXT."""
    return f"{name}.{T5_EMBEDDING_EXT}", f"{name}.{T5_MASK_EXT}"


def is_feature_member(member: str) -> bool:
    """A member `pixcap encode` adds: the posterior, and the T5 features of the primary or a named caption."""
    return member == LATENT_EXT or any(member == ext or member.endswith("." + ext)
                                       for ext in (T5_EMBEDDING_EXT, T5_MASK_EXT))

# Control maps the pipeline's control stage adds beside a sample, one member per kind: KEY.canny.png
# (Canny edges), and others by name (KEY.hed.png, KEY.depth.png). Greyscale PNGs of the stored image's size.
CANNY = "canny"


def control_ext(kind: str) -> str:
    """The member suffix of a control map of this kind: canny -> canny.png (KEY.canny.png)."""
    return f"{kind}.png"


CONTROL_EXT = control_ext(CANNY)


def control_column(kind: str) -> str:
    """The in-flight batch column holding a control map's PNG bytes, until the shard's member is written."""
    return f"control_{kind}"
