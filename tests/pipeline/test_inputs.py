"""Listing inputs: every entry accounted for, each input once, without running Ray."""
import os

import pytest

from pixcap.pipeline.inputs import list_sources
from pixcap.pipeline.parts import InputChanged, make_parts, record_sources
from pixcap.schemas import batch as B
from pixcap.stages.read import ReadStage

from .tarfiles import jpeg_bytes


def deep_folder(root, length: int = 4200):
    """A chain of folders whose full path is longer than PATH_MAX (4096), with an image at the end."""
    here = os.getcwd()
    try:
        os.chdir(root)
        depth = 0
        while len(str(root)) + depth * 101 < length:
            os.mkdir("d" * 100)
            os.chdir("d" * 100)
            depth += 1
        with open("deep.jpg", "wb") as f:
            f.write(jpeg_bytes(1))
    finally:
        os.chdir(here)


def test_a_folder_the_listing_cannot_enter_becomes_a_reject_row(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ok.jpg").write_bytes(jpeg_bytes(2))
    deep_folder(tmp_path / "in")
    [source] = list_sources([str(tmp_path / "in")])
    assert [relative for _, relative, _ in source.files] == ["ok.jpg"]
    assert source.listing_errors and "cannot list" in source.listing_errors[0][1]
    parts = make_parts([source], record_sources([source], [], "out"), shard_size=8)
    rows = [row for part in parts for row in ReadStage(8, False).read_part(part)]
    reasons = sorted(row[B.REJECT_REASON] for row in rows)
    assert reasons == ["", "read_error"]


def test_the_same_input_named_several_ways_is_listed_once(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(1))
    sources = list_sources([str(folder), f"{folder}/", str(folder / "a.jpg"), f"file://{folder}"])
    assert len(sources) == 1 and [relative for _, relative, _ in sources[0].files] == ["a.jpg"]


def test_a_folder_named_three_ways_and_through_a_link_is_read_once(tmp_path, monkeypatch):
    photos = tmp_path / "d" / "photos"
    photos.mkdir(parents=True)
    for i in range(3):
        (photos / f"{i}.jpg").write_bytes(jpeg_bytes(i))
    (tmp_path / "d" / "t.tar").write_bytes(b"")
    (tmp_path / "link").symlink_to(photos)
    (tmp_path / "tlink.tar").symlink_to(tmp_path / "d" / "t.tar")
    monkeypatch.chdir(tmp_path)
    sources = list_sources(["d/photos", "d/./photos", "d//photos", "link", "d/t.tar", "./tlink.tar", "d//t.tar"])
    assert [(s.kind, s.uri) for s in sources] == [("folder", str(photos)), ("tar", str(tmp_path / "d" / "t.tar"))]
    assert [relative for _, relative, _ in sources[0].files] == ["0.jpg", "1.jpg", "2.jpg"]


def test_a_link_to_an_input_the_output_was_made_from_is_that_input(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(jpeg_bytes(1))
    (tmp_path / "link").symlink_to(photos)
    recorded = record_sources(list_sources([str(photos)]), [], "out")
    again = record_sources(list_sources([str(tmp_path / "link")]), recorded, "out")
    assert again == recorded  # the same record, prefix and URI: nothing is added, nothing read again


def rewritten_keeping_size_and_mtime(path, data: bytes) -> None:
    stat = os.stat(path)
    assert len(data) == stat.st_size
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_tar_rewritten_with_its_size_and_mtime_passes_by_stat_and_is_refused_by_sha256(tmp_path):
    from .tarfiles import write_tar

    write_tar(tmp_path / "t.tar", [("a.jpg", jpeg_bytes(1))])
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "b.jpg").write_bytes(jpeg_bytes(2))
    inputs = [str(tmp_path / "t.tar"), str(folder)]
    by_stat, by_sha = (record_sources(list_sources(inputs, by=by), [], "out") for by in ("stat", "sha256"))
    assert by_sha[0]["identity"]["by"] == "sha256" and "by" not in by_stat[0]["identity"]  # stat: as outputs hold it

    other = tmp_path / "other.tar"
    write_tar(other, [("a.jpg", jpeg_bytes(3))])  # same length: the JPEGs of one size are alike in bytes
    rewritten_keeping_size_and_mtime(tmp_path / "t.tar", other.read_bytes())
    rewritten_keeping_size_and_mtime(folder / "b.jpg", (folder / "b.jpg").read_bytes()[::-1])
    assert record_sources(list_sources(inputs, by="stat"), by_stat, "out") == by_stat  # the limit of stat
    with pytest.raises(InputChanged) as refused:
        record_sources(list_sources(inputs, by="sha256"), by_sha, "out")
    assert "2 input(s) changed" in str(refused.value) and "sha256" in str(refused.value)


def test_identifying_inputs_otherwise_than_the_output_did_is_refused_naming_the_key(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(1))
    recorded = record_sources(list_sources([str(tmp_path)], by="stat"), [], "out")
    with pytest.raises(InputChanged, match="input_identity: out identified .* by stat .* asks for sha256"):
        record_sources(list_sources([str(tmp_path)], by="sha256"), recorded, "out")


def test_sha256_identity_never_blocks_on_a_fifo_nor_fails_on_an_unreadable_file(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(1))
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "locked.jpg").write_bytes(jpeg_bytes(2))
    os.chmod(tmp_path / "locked.jpg", 0)
    try:
        [source] = list_sources([str(tmp_path)], by="sha256")  # returns: the FIFO is not read
    finally:
        os.chmod(tmp_path / "locked.jpg", 0o644)
    assert [relative for _, relative, _ in source.files] == ["a.jpg", "locked.jpg", "pipe.jpg"]
