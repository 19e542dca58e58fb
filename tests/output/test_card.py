"""The dataset card: the Hub's own header (configs, license, size, task), the models, Table 1."""
from huggingface_hub import DatasetCard

from pixcap.output.card import CARD_MARK, CARD_NAME, dataset_card, size_category, write_dataset_card
from pixcap.output.storage import Storage

MANIFEST = {
    "job": {"license": "cc-by-4.0"},
    "fingerprint": {"shard_size": 8, "revision.caption": "sha256:ab"},
    "totals": {"written": 1500, "tars": 3, "rejected": 2},
    "models": {"caption": {"backend": "hf", "name": "llava-hf/llava-1.5-7b-hf", "resolved": "/m", "revision": "hub:0123"},
               "clip": {"name": "ViT-L-14", "pretrained": "openai", "resolved": ["a", "b"], "revision": "ViT-L-14 open_clip:openai"}},
}


def test_the_header_is_the_hub_s_and_points_datasets_at_the_shards():
    card = DatasetCard(dataset_card(MANIFEST))
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0"
    assert data["size_categories"] == ["1K<n<10K"]
    assert data["task_categories"] == ["text-to-image"]
    assert data["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "shards/*.tar"}]}]


def test_the_body_names_each_model_with_its_revision_and_gives_table_1():
    text = dataset_card(MANIFEST, {"images": "1500", "distinct nouns (DN)": "135"})
    assert "| caption | `llava-hf/llava-1.5-7b-hf`, backend `hf` | `hub:0123` |" in text
    assert "pretrained `openai`" in text and "`ViT-L-14 open_clip:openai`" in text
    assert "| distinct nouns (DN) | 135 |" in text
    assert "1,500 samples in 3 tars, and 2 inputs rejected" in text


def test_size_categories_follow_the_hub_s_bounds():
    assert [size_category(n) for n in (0, 999, 1000, 99_999, 100_000, 12_000_000)] == \
        ["n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "10M<n<100M"]


def test_a_card_the_user_made_their_own_is_kept(tmp_path):
    storage = Storage(str(tmp_path))
    write_dataset_card(storage, MANIFEST)
    assert CARD_MARK in (tmp_path / CARD_NAME).read_text()
    (tmp_path / CARD_NAME).write_text("# my own card\n")
    write_dataset_card(storage, MANIFEST)
    assert (tmp_path / CARD_NAME).read_text() == "# my own card\n"
