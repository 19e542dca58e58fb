"""Sample keys are unique by construction: a renamed key is checked again, so crafted names
cannot make two samples share a key in a tar, a folder, or a shard."""
import glob
import hashlib
import io
import json
import os
import tarfile

import duckdb
import webdataset as wds

from pixcap.output.commit import commit_shard
from pixcap.output.fragments import FragmentWriter
from pixcap.output.ledger import Ledger
from pixcap.output.storage import Storage
from pixcap.schemas import batch as B
from pixcap.schemas.stages import DecodeConfig
from pixcap.stages.decode import DecodeStage
from pixcap.stages.keys import KeyMaker, UniqueNames, printable_name, quoted_name, short_hash
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


LATIN1 = "caf\udce9"  # b"caf\xe9" (latin-1) as Python lists it: the byte that is not UTF-8 as a surrogate


def test_names_that_are_not_utf8_hash_and_print_without_error():
    assert printable_name(f"{LATIN1}.jpg") == "caf\\xe9.jpg"  # the byte kept, as a \xNN escape
    assert printable_name("café 写真.jpg") == "café 写真.jpg"  # valid names unchanged
    assert quoted_name(f"{LATIN1}\n.jpg") == "'caf\\xe9\\n.jpg'"  # as source writes it, on one line
    assert short_hash("x.png") == hashlib.sha1(b"x.png").hexdigest()[:8]  # earlier keys stay the same
    keys = KeyMaker("p")  # the latin-1 and the UTF-8 spelling sanitise to one key: the second is hashed
    assert keys.make(f"{LATIN1}.jpg") == "p/caf_"
    assert keys.make("café.jpg") == f"p/caf_-{short_hash('café.jpg')}"


def test_a_file_name_that_is_not_utf8_in_a_folder_and_in_a_tar_is_written(tmp_path):
    """Read, decode, fragment and commit, as a run does: the sample is written with a sanitised key
    and its source keeps the byte as `\\xe9`; an orphan sidecar with such a name is a reject row."""
    root = tmp_path / "in"
    root.mkdir()
    (root / "ok.jpg").write_bytes(jpeg_bytes(1))
    with open(os.fsencode(root) + b"/caf\xe9.jpg", "wb") as f:
        f.write(jpeg_bytes(2))
    with tarfile.open(root / "t.tar", "w", encoding="utf-8", errors="surrogateescape") as tar:
        for name, data in ((f"{LATIN1}.jpg", jpeg_bytes(3)), (f"{LATIN1}-alone.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    rows = read_all(list_parts([str(root)], 8), shard_size=8)
    out = Storage(str(tmp_path / "out"))
    ledger = Ledger(out, {row[B.SHARD].rsplit("-", 1)[0] for row in rows})
    batch = DecodeStage(DecodeConfig())({column: [row[column] for row in rows] for column in rows[0]})
    batch[B.CAPTION] = ["a caption"] * len(rows)  # what the caption stage adds
    summary = FragmentWriter(out)(batch)
    ledger.add(summary[B.FRAGMENT][0], summary)
    for shard in ledger.complete_shards():
        commit_shard(out, shard, sorted(ledger.shards[shard].fragments))
    stats = duckdb.sql(f"select source, key from '{out.path('stats')}/*.parquet' order by source").fetchall()
    assert stats == [(f"{root}/caf\\xe9.jpg", "in/caf_"), (f"{root}/ok.jpg", "in/ok"),
                     (f"{root}/t.tar::caf\\xe9.jpg", "t/caf_")]
    rejects = duckdb.sql(f"select source, reason, error from '{out.path('rejects')}/*.parquet'").fetchall()
    assert [(source, reason) for source, reason, _ in rejects] == [(f"{root}/t.tar::caf\\xe9-alone.json", "no_image")]
    assert "'caf\\xe9-alone.json'" in rejects[0][2]  # the error names the member as source writes it
    samples = list(wds.WebDataset(sorted(glob.glob(out.path("shards") + "/*.tar")), shardshuffle=False))
    assert sorted(json.loads(s["json"])["source"] for s in samples) == [source for source, _ in stats]
