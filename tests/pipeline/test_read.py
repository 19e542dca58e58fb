"""The read stage and input listing, without Ray."""
import os
import tarfile

import pytest

from pixcap.pipeline.inputs import InputError, list_parts
from pixcap.schemas import batch as B
from pixcap.stages.read import ReadStage

from .tarfiles import jpeg_bytes, sa1b_members, write_tar


def read_all(parts, shard_size=2, read_captions=False, **limits):
    rows = []
    columns = {c: [p[c] for p in parts] for c in parts[0]}
    for batch in ReadStage(shard_size, read_captions, **limits)(columns):
        rows += [{c: batch[c][i] for c in batch} for i in range(len(batch[B.KEY]))]
    return rows


def test_sa1b_tar_rows_keys_shards_and_ends(tmp_path):
    write_tar(tmp_path / "sa_000000.tar", sa1b_members(1, 5))
    parts = list_parts([str(tmp_path / "sa_000000.tar")], shard_size=2)
    assert [p[B.PART_ID] for p in parts] == ["sa_000000"]
    rows = read_all(parts)
    assert [r[B.KEY] for r in rows] == [f"sa_000000/sa_{k}" for k in range(1, 6)]
    assert [r[B.SHARD] for r in rows] == ["sa_000000-00000"] * 2 + ["sa_000000-00001"] * 2 + ["sa_000000-00002"]
    assert [r[B.INDEX] for r in rows] == [0, 1, 0, 1, 0]
    assert [r[B.SHARD_COUNT] for r in rows] == [-1, 2, -1, 2, 1]
    assert [r[B.PART_END] for r in rows] == [False] * 4 + [True]
    assert rows[0][B.DATA] == jpeg_bytes(1)
    assert rows[0][B.SOURCE] == f"{tmp_path}/sa_000000.tar::sa_1.jpg"
    assert all(r[B.REJECT_REASON] == "" for r in rows)


def test_captions_in_tar_and_in_captions_folder(tmp_path):
    write_tar(tmp_path / "sa_000001.tar", sa1b_members(1, 2, captions=True) + sa1b_members(3, 1))
    (tmp_path / "captions").mkdir()
    (tmp_path / "captions" / "sa_3.txt").write_text("from the captions folder\n")
    rows = read_all(list_parts([str(tmp_path)], 10), read_captions=True)
    assert [r[B.SIDECAR_CAPTION] for r in rows] == ["a caption for image 1", "a caption for image 2", "from the captions folder"]
    # The hf backend does not need them, and then they are not read.
    assert {r[B.SIDECAR_CAPTION] for r in read_all(list_parts([str(tmp_path)], 10))} == {""}


def test_unsafe_duplicate_and_link_members_are_rejected(tmp_path):
    link = tarfile.TarInfo("sa_9.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    device = tarfile.TarInfo("dev.png")
    device.type = tarfile.CHRTYPE
    write_tar(
        tmp_path / "bad.tar",
        [("sa_1.jpg", jpeg_bytes(1)), ("sa_1.jpg", jpeg_bytes(2)), ("../up.jpg", jpeg_bytes(3)),
         ("/abs.jpg", jpeg_bytes(4)), link, device, ("ok.PNG", jpeg_bytes(5))],
    )
    rows = read_all(list_parts([str(tmp_path / "bad.tar")], 100))
    assert [r[B.REJECT_REASON] for r in rows] == ["", "duplicate", "unsafe_member", "unsafe_member", "unsafe_member", "unsafe_member", ""]
    assert all(r[B.DATA] == b"" for r in rows if r[B.REJECT_REASON])
    assert rows[-1][B.KEY] == "bad/ok"
    assert all(".." not in r[B.KEY] and not r[B.KEY].startswith("/") for r in rows)


def test_tar_cut_inside_a_member_rejects_that_member_and_ends_the_part(tmp_path):
    path = tmp_path / "cut.tar"
    write_tar(path, sa1b_members(1, 3))
    with tarfile.open(path) as tar:
        third = tar.getmember("sa_3.jpg")
    path.write_bytes(path.read_bytes()[: third.offset_data + third.size // 2])
    rows = read_all(list_parts([str(path)], 100), shard_size=100)
    assert [r[B.KEY] for r in rows] == ["cut/sa_1", "cut/sa_2", "cut/sa_3"]
    assert [r[B.REJECT_REASON] for r in rows] == ["", "", "read_error"]
    assert rows[-1][B.PART_END] and rows[-1][B.SHARD_COUNT] == 3


def test_tar_cut_between_members_adds_one_row_for_the_archive(tmp_path):
    path = tmp_path / "cut.tar"
    write_tar(path, sa1b_members(1, 2))
    with tarfile.open(path) as tar:
        json2 = tar.getmember("sa_2.json")
    path.write_bytes(path.read_bytes()[: json2.offset_data + 3])
    rows = read_all(list_parts([str(path)], 100), shard_size=100)
    assert [r[B.REJECT_REASON] for r in rows] == ["", "", "read_error"]
    assert rows[-1][B.KEY] == "" and rows[-1][B.SOURCE] == str(path)


def test_unreadable_tar_is_one_reject_row(tmp_path):
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar archive at all" * 40)
    rows = read_all(list_parts([str(tmp_path / "junk.tar")], 100))
    assert len(rows) == 1 and rows[0][B.REJECT_REASON] == "read_error" and rows[0][B.KEY] == ""


def test_finished_inputs_are_skipped_but_keep_numbering(tmp_path):
    write_tar(tmp_path / "sa_000000.tar", sa1b_members(1, 5))
    parts = list_parts([str(tmp_path / "sa_000000.tar")], 2)
    parts[0][B.PART_SKIP] = ["sa_000000-00000", "sa_000000-00001/1", "sa_000000-00002/0"]
    rows = read_all(parts)
    assert [(r[B.KEY], r[B.SHARD], r[B.INDEX]) for r in rows] == [("sa_000000/sa_3", "sa_000000-00001", 0)]
    assert rows[0][B.SHARD_COUNT] == -1


def test_nested_folders_with_awkward_names_and_file_urls(tmp_path):
    root = tmp_path / "photos"
    (root / "sub dir").mkdir(parents=True)
    names = ["a.jpg", "a.png", "a b.jpg", "a_b.jpg", "x.y.z.JPEG", "sub dir/été.webp", "notes.txt"]
    for name in names:
        (root / name).write_bytes(jpeg_bytes(len(name)))
    (root / "sub dir" / "a.txt").write_text("caption of sub dir/a")  # no image sub dir/a.*
    parts = list_parts([f"file://{root}"], shard_size=4)
    assert [p[B.PART_ID] for p in parts] == ["photos-00000", "photos-00001"]
    rows = read_all(parts, shard_size=4)
    keys = [r[B.KEY] for r in rows]
    assert len(keys) == 8 and len(set(keys)) == 8
    for key in keys:
        assert key.startswith("photos/") and "." not in key and " " not in key
    assert "photos/x_y_z" in keys and "photos/sub_dir/_t_" in keys
    # The two text files belong to no image: accounted for as rejects, never read.
    orphans = {r[B.KEY]: r for r in rows if r[B.REJECT_REASON]}
    assert sorted(orphans) == ["photos/notes", "photos/sub_dir/a"]
    assert {r[B.REJECT_REASON] for r in orphans.values()} == {"no_image"}
    assert [r[B.SHARD] for r in rows] == ["photos-00000"] * 4 + ["photos-00001"] * 4
    # Same listing, same keys: keys are stable across runs.
    assert [r[B.KEY] for r in read_all(list_parts([str(root)], 4), 4)] == keys


def test_globs_and_missing_inputs(tmp_path):
    write_tar(tmp_path / "sa_000000.tar", sa1b_members(1, 1))
    write_tar(tmp_path / "sa_000001.tar", sa1b_members(2, 1))
    parts = list_parts([str(tmp_path / "sa_*.tar")], 10)
    assert [p[B.PART_ID] for p in parts] == ["sa_000000", "sa_000001"]
    with pytest.raises(InputError, match="no inputs match"):
        list_parts([str(tmp_path / "nothing_*.tar")], 10)


def test_same_named_inputs_get_distinct_prefixes(tmp_path):
    for d in ("a", "b"):
        os.makedirs(tmp_path / d)
        write_tar(tmp_path / d / "sa_000000.tar", sa1b_members(1, 1))
    parts = list_parts([str(tmp_path / "a"), str(tmp_path / "b")], 10)
    prefixes = [p[B.PART_SHARD_PREFIX] for p in parts]
    assert prefixes[0] == "sa_000000" and prefixes[1].startswith("sa_000000-") and len(set(prefixes)) == 2


def test_every_tar_member_is_an_input_a_sidecar_or_an_orphan_reject(tmp_path):
    folder = tarfile.TarInfo("sa_7")
    folder.type = tarfile.DIRTYPE
    orphan_link = tarfile.TarInfo("lonely.json")
    orphan_link.type, orphan_link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    write_tar(
        tmp_path / "sa_000000.tar",
        [("sa_2.json", b"{}"),  # before its image: claimed when sa_2.jpg arrives
         ("sa_1.jpg", jpeg_bytes(1)), ("sa_1.json", b"{}"),
         ("sa_2.jpg", jpeg_bytes(2)),
         ("sa_3.json", b"{}"),  # its image is missing
         folder,  # a folder entry is no input
         ("sa_4.dat", jpeg_bytes(4)),  # a JPEG under a non-image name: pixcap does not guess
         ("a.b.jpg", jpeg_bytes(5)), ("a.json", b"{}"),  # webdataset's key: claimed by a.b.jpg
         orphan_link, ("../up.json", b"{}")],
    )
    rows = read_all(list_parts([str(tmp_path / "sa_000000.tar")], 100), shard_size=100)
    assert [(r[B.KEY], r[B.REJECT_REASON]) for r in rows] == [
        ("sa_000000/sa_1", ""), ("sa_000000/sa_2", ""), ("sa_000000/a_b", ""),
        ("sa_000000/sa_3", "no_image"), ("sa_000000/sa_4", "no_image"),
        ("sa_000000/lonely", "unsafe_member"), ("sa_000000/up", "unsafe_member")]
    assert all(r[B.DATA] == b"" for r in rows[3:])
    assert rows[3][B.SOURCE].endswith("::sa_3.json") and "sa_3.json" in rows[3][B.REJECT_ERROR]
    assert [r[B.INDEX] for r in rows] == list(range(7)) and rows[-1][B.PART_END] and rows[-1][B.SHARD_COUNT] == 7
    # A resumed read numbers the orphans the same way and skips the finished ones.
    parts = list_parts([str(tmp_path / "sa_000000.tar")], 100)
    parts[0][B.PART_SKIP] = ["sa_000000-00000/3", "sa_000000-00000/5"]
    resumed = read_all(parts, shard_size=100)
    assert [r[B.INDEX] for r in resumed] == [0, 1, 2, 4, 6]


def test_folder_links_out_of_the_input_pipes_and_orphans_are_rejected(tmp_path):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(jpeg_bytes(1))
    root = tmp_path / "in"
    root.mkdir()
    (root / "real.jpg").write_bytes(jpeg_bytes(2))
    (root / "real.json").write_text("{}")  # a sidecar: no input of its own
    (root / "inside.jpg").symlink_to(root / "real.jpg")  # a link within the input is read
    (root / "escape.jpg").symlink_to(outside)
    (root / "etc").symlink_to("/etc")  # a link to a folder outside is not followed
    os.mkfifo(root / "pipe.jpg")  # reading a pipe would block the run forever
    (root / "orphan.json").write_text("{}")
    rows = read_all(list_parts([str(root)], 100), shard_size=100)
    outcome = {r[B.KEY]: r[B.REJECT_REASON] for r in rows}
    assert outcome == {"in/escape": "unsafe_member", "in/etc": "unsafe_member", "in/inside": "",
                       "in/orphan": "no_image", "in/pipe": "unsafe_member", "in/real": ""}
    by_key = {r[B.KEY]: r for r in rows}
    assert by_key["in/inside"][B.DATA] == jpeg_bytes(2) and by_key["in/escape"][B.DATA] == b""
    assert "outside the input" in by_key["in/escape"][B.REJECT_ERROR]


def test_a_glob_accounts_for_every_file_it_matches(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(1))
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json").write_text("{}")
    rows = read_all(list_parts([str(tmp_path / "*")], 100), shard_size=100)
    assert [(r[B.KEY].split("/", 1)[1], r[B.REJECT_REASON]) for r in rows] == [("a", ""), ("b", "no_image")]
    with pytest.raises(InputError, match="neither a folder, a tar, nor an image"):
        list_parts([str(tmp_path / "b.json")], 100)


def test_sidecar_captions_are_not_read_through_links_out_of_the_input(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("private text outside the input")
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.jpg").write_bytes(jpeg_bytes(1))
    (root / "a.txt").symlink_to(secret)
    (root / "b.jpg").write_bytes(jpeg_bytes(2))
    (root / "b.txt").write_text("a real caption")
    rows = read_all(list_parts([str(root)], 100), shard_size=100, read_captions=True)
    assert [r[B.SIDECAR_CAPTION] for r in rows] == ["", "a real caption"]


def test_files_and_members_over_max_file_bytes_are_refused_unread(tmp_path):
    small, big = jpeg_bytes(1, size=(32, 32)), jpeg_bytes(2, size=(256, 256))
    write_tar(tmp_path / "t.tar", [("small.jpg", small), ("big.jpg", big), ("after.jpg", small)])
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "big.jpg").write_bytes(big)
    limit = {"max_file_bytes": len(small)}
    rows = read_all(list_parts([str(tmp_path / "t.tar"), str(tmp_path / "folder")], 100), 100, **limit)
    assert [(r[B.KEY], r[B.REJECT_REASON]) for r in rows] == [
        ("t/small", ""), ("t/big", "too_large"), ("t/after", ""), ("folder/big", "too_large")]
    assert rows[1][B.DATA] == b"" and "decode.max_file_bytes" in rows[1][B.REJECT_ERROR]
    assert rows[2][B.DATA] == small  # the stream skipped the big member's bytes correctly
