"""Sidecar caption files decoded as users' files come, and cleaned of what is never a word."""
import codecs

import pytest

from pixcap.schemas import batch as B
from pixcap.stages.caption_text import caption_text, clean_caption
from tests.pipeline.tarfiles import jpeg_bytes, write_tar
from tests.pipeline.test_read import list_parts, read_all

TEXT = "a naïve café “by night”"


@pytest.mark.parametrize("data", [
    TEXT.encode("utf-8"),
    codecs.BOM_UTF8 + TEXT.encode("utf-8"),  # the mark is not part of the first word
    TEXT.encode("utf-16"),  # with its mark, as Windows' Notepad writes "Unicode"
    TEXT.encode("utf-16-be").join([codecs.BOM_UTF16_BE, b""]),
    TEXT.encode("utf-32"),
    TEXT.encode("cp1252"),  # Windows' "ANSI": latin-1 letters and curly quotes, not UTF-8
], ids=["utf-8", "utf-8 bom", "utf-16 le bom", "utf-16 be bom", "utf-32 bom", "cp1252"])
def test_each_encoding_users_save_in_decodes_to_the_same_text(data):
    assert caption_text(data) == TEXT


def test_latin1_without_windows_characters_is_not_mojibake():
    assert caption_text("crème brûlée".encode("latin-1")) == "crème brûlée"


def test_control_characters_and_ansi_escapes_are_removed_and_whitespace_is_one_space():
    data = b"\x1b[1;31mcat\x00\x00\x1b[0m on a\tmat\r\nat\x07 night\x7f\x1b]0;title\x07 \xc2\x85end\x0c"  # \xc2\x85: NEL, a C1 control
    assert caption_text(data) == "cat on a mat at night end"
    assert clean_caption("  \ufeffdog\u0000  ") == "dog"


def test_a_character_cut_by_the_read_limit_is_dropped_not_mojibake():
    assert caption_text("naïve".encode("utf-8")[:3], cut=True) == "na"
    assert caption_text("naïve".encode("utf-8")[:3]) == "naÃ"  # a whole file: not UTF-8, so Windows-1252


def test_the_read_stage_cleans_captions_in_a_tar_and_beside_files(tmp_path):
    write_tar(tmp_path / "t.tar", [("a.jpg", jpeg_bytes(1)), ("a.txt", b"cat\x00\x00 \x1b[31mred\x1b[0m"),
                                   ("b.jpg", jpeg_bytes(2)), ("b.txt", TEXT.encode("utf-16"))])
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "c.jpg").write_bytes(jpeg_bytes(3))
    (folder / "c.txt").write_bytes(codecs.BOM_UTF8 + "crème\r\n".encode("utf-8"))
    (folder / "d.jpg").write_bytes(jpeg_bytes(4))
    (folder / "d.txt").write_bytes("crème brûlée".encode("latin-1"))
    rows = read_all(list_parts([str(tmp_path / "t.tar"), str(folder)], 10), read_captions=True)
    assert [r[B.SIDECAR_CAPTION] for r in rows] == ["crème", "crème brûlée", "cat red", TEXT]  # folders are listed first
