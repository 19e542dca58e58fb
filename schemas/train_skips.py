"""Why the trainer (and `pixcap encode`) passes over a sample of a shard: the `skipped` counts in log.jsonl.

These are not the pipeline's reject reasons (schemas/rejects.py): a reject is an input that never
became a sample; a skip is a written sample that one training job does not use. The words differ
where the meanings do. Stable words: log readers group by them; add, never rename.
"""

NO_RECORD = "no_record"  # the sample has no KEY.json, so no filter can be applied
FILTER = "filter:"  # + the name of the first filters.* key the sample fails, e.g. filter:min_clip_score
LATENT_NOT_POSTERIOR = "latent_not_posterior"  # a stored latent that is one frozen draw, not a posterior
LATENT_SIZE = "latent_size"  # a stored posterior of a size none of this job's squares or buckets has
SMALLER_THAN_BUCKET = "smaller_than_bucket"  # the image would have to be enlarged to fill its square or bucket
NO_PIXELS = "no_image_or_latent"  # neither an image member nor a stored posterior
NO_IMAGE_TO_ENCODE = "no_image_to_encode"  # pixcap encode: the sample has no image member to encode
UNREADABLE = "unreadable"  # a member that cannot be decoded (a corrupt image, a broken KEY.json)
BROKEN_SHARD = "broken_shard"  # a shard that broke off (truncated, unreachable): counted once, its rest is lost
CARRIED_UNREADABLE = "carried_unreadable"  # a sample carried over a segment boundary that could not be read again
NO_CONTROL = "no_control"  # adapter: controlnet, and the sample has no KEY.<controlnet.control>.png
CONTROL_SIZE = "control_size"  # the control map is not the size of the stored image it belongs to
NO_CHOSEN_CAPTION = "no_chosen_caption"  # caption_choice: the sample has none of the captions it may choose
NO_CAPTION_FEATURES = "no_caption_features"  # caption_choice on encoded shards: no T5 features of the chosen caption

SKIPS = {
    NO_RECORD: "the sample has no KEY.json",
    FILTER: "the sample fails a filters.* key (the key follows the colon)",
    LATENT_NOT_POSTERIOR: "the stored latent is a single draw from an older pixcap encode, not a posterior",
    LATENT_SIZE: "the stored posterior's size is none of this job's squares or buckets",
    SMALLER_THAN_BUCKET: "the image is smaller than its square or bucket, and is never enlarged",
    NO_PIXELS: "the sample has neither an image nor a stored posterior",
    NO_IMAGE_TO_ENCODE: "pixcap encode found no image member in the sample",
    UNREADABLE: "a member could not be decoded",
    BROKEN_SHARD: "a shard broke off before its end",
    CARRIED_UNREADABLE: "a sample held in a partly filled bucket could not be read again at the next data segment",
    NO_CONTROL: "a ControlNet job, and the sample has no control map of its kind",
    CONTROL_SIZE: "the control map's size differs from its stored image's",
    NO_CHOSEN_CAPTION: "caption_choice names captioners (or needs CLIP scores) the sample has none of",
    NO_CAPTION_FEATURES: "caption_choice on shards from pixcap encode, and the chosen caption has no stored T5 features"
                         " (encoded by a pixcap that stored the primary caption's only): encode again",
}


def filter_skip(name: str) -> str:
    """The skip reason of a sample that fails filters.<name>."""
    return FILTER + name
