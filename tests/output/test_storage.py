"""The output's storage refuses any path that leaves its root, whoever built the path."""
import pytest

from pixcap.output.storage import OutsideOutput, Storage


@pytest.mark.parametrize("relative", ["../evil", "shards/../../evil-00000.tar", "/etc/passwd", "..", "a/../../b"])
def test_a_path_that_leaves_the_output_is_refused_for_reading_and_writing(tmp_path, relative):
    storage = Storage(str(tmp_path / "out"))
    with pytest.raises(OutsideOutput, match="leaves the output"):
        storage.write_bytes(relative, b"x")
    with pytest.raises(OutsideOutput):
        storage.read_bytes(relative)
    with pytest.raises(OutsideOutput):
        storage.remove_tree(relative)
    assert not any(p.name in ("evil", "evil-00000.tar", "b") for p in tmp_path.rglob("*"))


def test_paths_inside_the_output_still_work(tmp_path):
    storage = Storage(str(tmp_path / "out"))
    storage.write_bytes("stats/a/../x.parquet", b"x")
    assert storage.read_bytes("stats/x.parquet") == b"x"
