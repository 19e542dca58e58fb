"""The sample record: one row of stats/*.parquet and the body of each shard's KEY.json.

The writer, `pixcap stats` and the trainer import these names; a column is defined here only.
"""
import pyarrow as pa

# Columns every written sample carries, in the order they are stored.
SAMPLE_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # input URI + "::" + member path
        pa.field("sha256", pa.string(), nullable=False),  # of the original bytes
        pa.field("format", pa.string()),  # detected from bytes: jpeg, png, webp, ...
        pa.field("width", pa.int32()),  # of the stored image
        pa.field("height", pa.int32()),
        pa.field("orig_width", pa.int32()),  # of the original, upright
        pa.field("orig_height", pa.int32()),
        pa.field("passthrough", pa.bool_()),  # stored bytes are the original bytes
        pa.field("caption", pa.string()),
        pa.field("caption_model", pa.string()),
        pa.field("nouns", pa.list_(pa.string())),
        pa.field("n_nouns", pa.int32()),
        pa.field("clip_score", pa.float32()),
        pa.field("grounded_nouns", pa.list_(pa.string())),
        pa.field("n_grounded", pa.int32()),
        pa.field("clip_model", pa.string()),
    ]
)
SAMPLE_COLUMNS = SAMPLE_SCHEMA.names

# Shard members: KEY.jpg (the stored image), KEY.txt (the caption), KEY.json (the record).
IMAGE_EXT = "jpg"
CAPTION_EXT = "txt"
RECORD_EXT = "json"

# Members `pixcap encode` adds beside a sample (trainer issue); declared here so both sides agree.
LATENT_EXT = "latent.npy"
T5_EMBEDDING_EXT = "t5.npy"
T5_MASK_EXT = "t5mask.npy"
