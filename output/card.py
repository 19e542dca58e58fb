"""The output's dataset card, README.md: what the Hugging Face Hub and `datasets` read first.

Written with huggingface_hub's DatasetCard, so its YAML header is the Hub's own: `configs` (so
`datasets.load_dataset(OUT)` loads the shards, not the stats parquet it would pick by itself),
license, size category, task categories, tags; the body says what the output holds, which models
made it (with their revisions), and PixArt-α's Table 1 when the caller gives it.
"""
from __future__ import annotations

import typing

from .layout import shard_glob
from .storage import Storage

CARD_NAME = "README.md"
CARD_MARK = "<!-- written by pixcap; it rewrites this file unless the line is removed -->"
# The Hub's size categories, by upper bound.
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def size_category(samples: int) -> str:
    return next((name for bound, name in SIZE_CATEGORIES if samples < bound), "n>1T")


def _models_lines(models: dict) -> str:
    lines = []
    for stage, entry in models.items():
        named = entry.get("name") or entry.get("backend", "")
        extra = "".join(f", {key} `{value}`" for key, value in entry.items()
                        if key not in ("name", "resolved", "revision") and value)
        lines.append(f"| {stage} | `{named}`{extra} | `{entry.get('revision', '')}` |")
    return "\n".join(["| stage | model | revision |", "| --- | --- | --- |", *lines]) if lines else ""


def _table_lines(table: typing.Optional[dict]) -> str:
    if not table:
        return ""
    rows = "\n".join(f"| {name} | {value} |" for name, value in table.items())
    return f"\n## Concept density (PixArt-α's Table 1)\n\n| measure | value |\n| --- | --- |\n{rows}\n"


def dataset_card(manifest: dict, table: typing.Optional[dict] = None) -> str:
    """The card's text for a manifest (and Table 1 as {measure: value}, when given)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    totals = manifest.get("totals") or {}
    license = ((manifest.get("job") or {}).get("license")) or "other"
    data = DatasetCardData(
        license=license, size_categories=[size_category(totals.get("written", 0))],
        task_categories=["text-to-image"], tags=["pixcap", "webdataset", "text-to-image"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": shard_glob("tar")}]}],
    )
    fingerprint = manifest.get("fingerprint") or {}
    body = f"""{CARD_MARK}

# pixcap output

WebDataset shards of images with their captions and concept-density records, made by pixcap:
{totals.get("written", 0):,} samples in {totals.get("tars", 0):,} tars, and {totals.get("rejected", 0):,} inputs rejected
(`rejects/`, each with its stage and reason). Per-sample statistics are in `{shard_glob('stats')}`;
`manifest.json` holds the configuration ({len(fingerprint)} settings in its fingerprint), the models
and their revisions, every input, the run history, and the size and sha256 of every file
(`pixcap verify` checks them). The images keep the license of their source; `license` above is
what the job that made this output said (the job key `license`).

## Models

{_models_lines(manifest.get("models") or {})}
{_table_lines(table)}"""
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def write_dataset_card(storage: Storage, manifest: dict, table: typing.Optional[dict] = None) -> None:
    """README.md from dataset_card, unless someone made the card their own (removed CARD_MARK)."""
    try:
        existing = storage.read_bytes(CARD_NAME).decode("utf-8", "replace")
        if CARD_MARK not in existing:
            return
    except FileNotFoundError:
        pass
    storage.write_bytes(CARD_NAME, dataset_card(manifest, table).encode("utf-8"))
