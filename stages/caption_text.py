"""Sidecar caption files (KEY.txt, captions/KEY.txt, a tar's .txt member) as users' files come.

Decoding: a byte-order mark says the encoding (UTF-8, UTF-16 or UTF-32, the mark removed);
without one the text is UTF-8 if it decodes as UTF-8, else Windows-1252 (latin-1 with the
printable characters Windows puts in 0x80-0x9F, where latin-1 has only control characters).
A character cut in two by the read limit is dropped rather than turned into mojibake.

Cleaning: ANSI escape sequences (`ESC [ 31 m`, `ESC ] ... BEL`) and every other control
character (NUL, DEL, C1) are removed, with any stray byte-order mark; whitespace (spaces, tabs,
line breaks) is collapsed to single spaces. A caption is one line of text for the models and
the stats, and a control character is never a word.
"""
from __future__ import annotations

import codecs
import re
import unicodedata

BOMS = (  # UTF-32 first: its little-endian mark begins with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# CSI (ESC [ params final), OSC (ESC ] ... BEL or ESC \), and two-character escapes (ESC + one byte).
ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")


def _decoded(data: bytes, cut: bool) -> str:
    # final=not cut: a file cut at the read limit may end inside a character, which is dropped;
    # a whole file ending so is not UTF-8 (latin-1 `caf\xe9` ends with what looks like a lead byte).
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return codecs.getincrementaldecoder(encoding)("replace").decode(data[len(bom):], final=not cut)
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=not cut)
    except UnicodeDecodeError:
        pass
    # Windows-1252's five unassigned bytes are C1 controls in latin-1, removed below either way.
    return data.decode("cp1252", "ignore")


def clean_caption(text: str) -> str:
    """Caption text without escape sequences or control characters, on one line."""
    text = ANSI_ESCAPE.sub("", text)
    kept = (c for c in text if c.isspace() or (unicodedata.category(c) != "Cc" and c != "\ufeff"))
    return " ".join("".join(kept).split())


def caption_text(data: bytes, cut: bool = False) -> str:
    """A sidecar file's bytes as one clean line of caption text ("" when nothing is left); cut:
    the bytes are the file's first ones only (it was longer than the read limit)."""
    return clean_caption(_decoded(data, cut))
