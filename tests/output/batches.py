"""Finished rows as the last stage hands them to the writer, for the output tests without Ray
(commit, ledger, blobs, manifest) and the pipeline tests that fake the Ray graph."""
from pixcap.schemas import batch as B
from tests.pipeline.tarfiles import jpeg_bytes


def finished_batch(shard, indices, count=None, rejected=(), part_end=False):
    """Rows as the clip stage hands them to the writer."""
    n = len(indices)
    last = max(indices)
    return {
        B.KEY: [f"p/k{i}" for i in indices],
        B.SHARD: [shard] * n,
        B.INDEX: list(indices),
        B.SHARD_COUNT: [count if (count and i == last) else -1 for i in indices],
        B.PART_END: [part_end and i == last for i in indices],
        B.PART_ID: ["p"] * n,
        B.SOURCE: [f"in.tar::k{i}.jpg" for i in indices],
        B.STORED: [b"" if i in rejected else jpeg_bytes(i) for i in indices],
        B.REJECT_STAGE: ["decode" if i in rejected else "" for i in indices],
        B.REJECT_REASON: ["decode_error" if i in rejected else "" for i in indices],
        B.REJECT_ERROR: ["broken" if i in rejected else "" for i in indices],
        "sha256": [f"{i:064x}" for i in indices],
        "format": ["jpeg"] * n,
        "width": [64] * n, "height": [48] * n, "orig_width": [64] * n, "orig_height": [48] * n,
        "passthrough": [True] * n,
        "caption": [f"a red car number {i}" for i in indices],
        "caption_model": ["tiny"] * n,
        "nouns": [["car", "number"] for _ in indices], "n_nouns": [2] * n,
        "clip_score": [0.25] * n,
        "grounded_nouns": [["car"] for _ in indices], "n_grounded": [1] * n,
        "clip_model": ["tiny:ckpt"] * n,
    }

def big_batch():
    """A shard of three inputs, one rejected, whose tar is over 10 KB (one tar stream block)."""
    batch = finished_batch("p-00000", [0, 1, 2], count=3, rejected={2})
    batch[B.STORED] = [jpeg_bytes(i, size=(160, 120)) if s else s for i, s in enumerate(batch[B.STORED])]
    return batch
