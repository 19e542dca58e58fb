"""Sample keys are unique by construction: a renamed key is checked again, so crafted names
cannot make two samples share a key in a tar, a folder, or a shard."""
import webdataset as wds

from pixcap.schemas import batch as B
from pixcap.stages.keys import KeyMaker, UniqueNames, short_hash
from tests.pipeline.hostile import crafted_names
from tests.pipeline.tarfiles import jpeg_bytes, write_tar
from tests.pipeline.test_read import list_parts, read_all


def test_a_renamed_key_is_checked_again():
    keys = KeyMaker("p")
    made = [keys.make(name) for name in crafted_names()]
    assert made[0] == f"p/x-{short_hash('x.png')}" and made[1] == "p/x"
    assert len(set(made)) == 3, made


def test_keys_are_the_same_on_every_run():
    names = crafted_names() + ["a b.jpg", "a_b.jpg", "a_b.png", f"a_b-{short_hash('a_b.jpg')}.jpg"]
    first = [KeyMaker("p").make(n) for n in names]
    assert first == [KeyMaker("p").make(n) for n in names]


def test_unique_names_survive_any_chain_of_collisions():
    names = UniqueNames()
    wanted = ["k"] * 50
    # Plant each rename the next one would pick, before it is picked.
    planted = []
    for attempt in range(5):
        original = "o" if attempt == 0 else f"o#{attempt}"
        planted.append(names.claim(f"k-{short_hash(original)}", f"planted{attempt}"))
    got = [names.claim(w, "o") for w in wanted]
    assert len(set(got + planted)) == len(got) + len(planted)


def test_crafted_names_in_one_tar_give_distinct_keys_and_webdataset_samples(tmp_path):
    names = crafted_names()
    write_tar(tmp_path / "t.tar", [(name, jpeg_bytes(i)) for i, name in enumerate(names)])
    rows = read_all(list_parts([str(tmp_path / "t.tar")], 100), shard_size=100)
    keys = [r[B.KEY] for r in rows]
    assert len(keys) == 3 and len(set(keys)) == 3, keys
    assert all(r[B.REJECT_REASON] == "" for r in rows)
    # What the writer does with the keys: KEY.jpg members; webdataset must see three samples.
    write_tar(tmp_path / "shard.tar", [(f"{key}.jpg", r[B.DATA]) for key, r in zip(keys, rows)])
    samples = list(wds.WebDataset(str(tmp_path / "shard.tar"), shardshuffle=False))
    assert sorted(s["__key__"] for s in samples) == sorted(keys)


def test_crafted_names_in_a_folder_give_distinct_keys(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for i, name in enumerate(crafted_names()):
        (root / name).write_bytes(jpeg_bytes(i))
    rows = read_all(list_parts([str(root)], 100), shard_size=100)
    keys = [r[B.KEY] for r in rows]
    assert len(keys) == 3 and len(set(keys)) == 3, keys
