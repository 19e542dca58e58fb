"""The read stage and input listing, without Ray."""
import os
import tarfile

import pytest

from pixcap.pipeline.inputs import InputError, list_sources
from pixcap.pipeline.parts import make_parts, record_sources
from pixcap.schemas import batch as B
from pixcap.stages.read import ReadStage

from .hostile import write_gzip_bomb, write_padded_tar
from .tarfiles import jpeg_bytes, sa1b_members, write_tar


def list_parts(inputs: list, shard_size: int) -> list:
    """The read stage's part rows for inputs, as `pixcap run` makes them for a new output."""
    sources = list_sources(inputs)
    return make_parts(sources, record_sources(sources, [], "out"), shard_size)


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
    parts[0][B.PART_SKIP] = [0, 1, 3, 4]  # positions in the part: shard 0 whole, 1/1 and 2/0
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
    assert [p[B.PART_ID] for p in parts] == ["photos.00000", "photos.00001"]
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
    parts[0][B.PART_SKIP] = [3, 5]
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
    with pytest.raises(InputError, match="neither a folder, a tar, a parquet file, nor an image"):
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
    outcome = {r[B.KEY]: r for r in rows}
    assert [(r[B.KEY], r[B.REJECT_REASON]) for r in rows if r[B.KEY].startswith("t/")] == [
        ("t/small", ""), ("t/big", "too_large"), ("t/after", "")]
    assert outcome["folder/big"][B.REJECT_REASON] == "too_large"
    assert outcome["t/big"][B.DATA] == b"" and "decode.max_file_bytes" in outcome["t/big"][B.REJECT_ERROR]
    assert outcome["t/after"][B.DATA] == small  # the stream skipped the big member's bytes correctly


# -- tars found in folders get the checks images get -------------------------------------------
def read_within(parts, seconds: float = 60, **kwargs) -> list:
    """read_all, failing (instead of hanging the test run) if reading blocks."""
    import threading

    result = {}
    reader = threading.Thread(target=lambda: result.update(rows=read_all(parts, **kwargs)), daemon=True)
    reader.start()
    reader.join(seconds)
    assert not reader.is_alive(), f"reading blocked for {seconds} s"
    return result["rows"]


def test_tars_in_a_folder_that_are_pipes_or_links_out_are_one_reject_row_each(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_tar(elsewhere / "x.tar", sa1b_members(90, 1))
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "good.jpg").write_bytes(jpeg_bytes(1))
    write_tar(root / "sub" / "real.tar", sa1b_members(2, 1))
    os.mkfifo(root / "pipe.tar")  # opening it to read would wait for a writer forever
    (root / "x.tar").symlink_to(elsewhere / "x.tar")  # leads out of the input folder
    (root / "zero.tar").symlink_to("/dev/zero")  # a device, and outside too
    (root / "inside.tar").symlink_to(root / "sub" / "real.tar")  # a link within the folder is read
    parts = list_parts([str(root)], 100)
    assert {p[B.PART_ROOT] for p in parts if p[B.PART_KIND] == "tar"} == {str(root)}
    rows = read_within(parts, shard_size=100)
    outcome = {r[B.SOURCE]: (r[B.KEY], r[B.REJECT_REASON]) for r in rows}
    assert outcome == {
        str(root / "good.jpg"): ("in/good", ""),
        str(root / "pipe.tar"): ("", "unsafe_member"),
        str(root / "x.tar"): ("", "unsafe_member"),
        str(root / "zero.tar"): ("", "unsafe_member"),
        f"{root / 'inside.tar'}::sa_2.jpg": ("inside/sa_2", ""),
        f"{root / 'sub' / 'real.tar'}::sa_2.jpg": ("real/sa_2", ""),
    }
    errors = {r[B.SOURCE]: r[B.REJECT_ERROR] for r in rows}
    assert "outside the input" in errors[str(root / "x.tar")]
    assert "not a regular file" in errors[str(root / "pipe.tar")]
    tar_rows = [r for r in rows if r[B.SOURCE].endswith(("pipe.tar", "x.tar"))]
    assert all(r[B.PART_END] and r[B.SHARD_COUNT] == 1 and r[B.DATA] == b"" for r in tar_rows)


def test_a_tar_named_by_itself_may_be_a_link_but_never_a_pipe_or_device(tmp_path):
    write_tar(tmp_path / "real.tar", sa1b_members(1, 1))
    (tmp_path / "named.tar").symlink_to(tmp_path / "real.tar")
    os.mkfifo(tmp_path / "pipe.tar")
    (tmp_path / "zero.tar").symlink_to("/dev/zero")
    parts = list_parts([str(tmp_path / n) for n in ("named.tar", "pipe.tar", "zero.tar")], 100)
    assert {p[B.PART_ROOT] for p in parts} == {""}
    rows = read_within(parts, shard_size=100)
    assert sorted((r[B.SOURCE].rsplit("/", 1)[1], r[B.REJECT_REASON]) for r in rows) == [
        ("named.tar::sa_1.jpg", ""), ("pipe.tar", "unsafe_member"), ("zero.tar", "unsafe_member")]


# -- compressed-member bombs -----------------------------------------------------------------
MIB = 1 << 20


@pytest.mark.slow  # 1 GiB to decompress, under tracemalloc: about 15 s
def test_a_gzip_bomb_of_zeros_named_jpg_is_rejected_unread_in_bounded_memory(tmp_path):
    import time
    import tracemalloc

    bomb = write_gzip_bomb(tmp_path / "bomb.tar.gz")
    assert bomb.stat().st_size < 2 * MIB  # 1 GiB of members
    parts = list_parts([str(bomb)], 100)
    tracemalloc.start()
    start = time.monotonic()
    try:
        rows = read_all(parts, shard_size=100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    seconds = time.monotonic() - start
    assert [r[B.REJECT_REASON] for r in rows] == ["not_an_image"] * 16
    assert all(r[B.DATA] == b"" for r in rows) and "no image format recognises; not read" in rows[0][B.REJECT_ERROR]
    assert peak < 16 * MIB, f"reading held {peak / MIB:.0f} MiB"
    print(f"16 x 64 MiB of zeros in a {bomb.stat().st_size} byte tar.gz: {seconds:.1f} s, peak {peak / MIB:.1f} MiB")


def test_a_member_too_big_for_its_header_is_too_large_and_real_big_images_are_read(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    def encoded(fmt, size, **params):
        pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, fmt, **params)
        return out.getvalue()

    header = jpeg_bytes(1, size=(100, 80))  # a real small JPEG, then 40 MiB of zeros
    big_png = encoded("PNG", (1400, 1200))  # about 5 MB of noise: plausible, read whole
    big_webp = encoded("WEBP", (2000, 1600), lossless=True)  # WebP's size needs the whole file
    assert len(big_png) > 4 * MIB and len(big_webp) > 4 * MIB
    write_padded_tar(tmp_path / "t.tar.gz", [("padded.jpg", 40 * MIB, header),
                                                ("noise.png", len(big_png), big_png),
                                                ("noise.webp", len(big_webp), big_webp)])
    (tmp_path / "folder").mkdir()
    with open(tmp_path / "folder" / "sparse.jpg", "wb") as f:  # 64 MiB of zeros, no disk used
        f.truncate(64 * MIB)
    (tmp_path / "folder" / "padded.png").write_bytes(encoded("PNG", (64, 48)).ljust(30 * MIB, b"\0"))
    rows = read_all(list_parts([str(tmp_path / "t.tar.gz"), str(tmp_path / "folder")], 100), shard_size=100)
    by_source = {r[B.SOURCE].rsplit("/", 1)[1]: r for r in rows}
    assert by_source["t.tar.gz::padded.jpg"][B.REJECT_REASON] == "too_large"
    assert "more than a 100x80 JPEG can take" in by_source["t.tar.gz::padded.jpg"][B.REJECT_ERROR]
    assert by_source["t.tar.gz::noise.png"][B.DATA] == big_png
    assert by_source["t.tar.gz::noise.webp"][B.DATA] == big_webp
    assert by_source["sparse.jpg"][B.REJECT_REASON] == "not_an_image"
    assert by_source["padded.png"][B.REJECT_REASON] == "too_large"
    assert all(r[B.DATA] == b"" for r in rows if r[B.REJECT_REASON])


def test_read_batches_are_bounded_by_bytes_not_by_rows(tmp_path):
    from pixcap.stages.read import BATCH_BYTES

    member = 3 * MIB  # under the peek size: read whole, counted in the batch's bytes
    write_padded_tar(tmp_path / "t.tar", [(f"m{k}.jpg", member, b"") for k in range(12)])
    parts = list_parts([str(tmp_path / "t.tar")], 100)
    columns = {c: [p[c] for p in parts] for c in parts[0]}
    batches = [sum(map(len, batch[B.DATA])) for batch in ReadStage(100, False)(columns)]
    assert sum(batches) == 12 * member and len(batches) >= 12 * member // (BATCH_BYTES + member)
    assert max(batches) < BATCH_BYTES + member, batches
