"""Listing inputs: every entry accounted for, each input once, without running Ray."""
import os

from pixcap.pipeline.inputs import list_sources
from pixcap.pipeline.parts import make_parts, record_sources
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
