"""What a caption becomes before T5: PixArt-alpha's own cleaning, as its T5Embedder runs it.

PixArt-alpha's T5Embedder (diffusion/model/t5.py, `text_preprocessing`) runs `clean_caption` twice
on every caption: URLs, HTML, @names, CJK ranges, dashes and quotes, ids and file names go, and the
text is lowercased. Without cleaning it lowercases and strips. Training, `pixcap encode` and the
sampling of `pixcap sample` all call `prepare_captions`, so a caption reaches T5 the same way in each.

diffusers' PixArtAlphaPipeline carries a copy of the cleaning that leaves out one step, the strip at
the end of `basic_clean`; the two differ on punctuation-heavy text (and on none of 21 realistic
captions a review tried). The cleaning here is the official one, written as a table of its steps.
Sampling hands T5 captions cleaned here (the pipeline is told clean_caption=False, so it only
lowercases and strips them again).

beautifulsoup4 and ftfy are needed; diffusers would quietly skip its cleaning without them. Here
that is an error: it would make training and sampling disagree without a word.
"""
from __future__ import annotations

import html
import re
import typing
import urllib.parse

# The official patterns, in their order; each (pattern, replacement) is one re.sub.
_URL_TAIL = r"[a-zA-Z0-9.\-]+[.](?:com|co|ru|net|org|edu|gov|it)[\w/-]*\b\/?(?!@)))"
BEFORE_HTML = [
    (r"<person>", "person"),
    (r"\b((?:https?:(?:\/{1,3}|[a-zA-Z0-9%])|" + _URL_TAIL, ""),  # URLs
    (r"\b((?:www:(?:\/{1,3}|[a-zA-Z0-9%])|" + _URL_TAIL, ""),
]
# CJK strokes, katakana extensions, enclosed CJK, CJK compatibility, CJK ideographs (ext. A),
# Yijing hexagrams, CJK unified ideographs
CJK = [r"[\u31c0-\u31ef]+", r"[\u31f0-\u31ff]+", r"[\u3200-\u32ff]+", r"[\u3300-\u33ff]+", r"[\u3400-\u4dbf]+",
       r"[\u4dc0-\u4dff]+", r"[\u4e00-\u9fff]+"]
BAD_PUNCT = r"[#®•©™&@·º½¾¿¡§~\)\(\]\[\}\{\|\\/\*]{1,}"  # ***AUSVERKAUFT***, #AUSVERKAUFT
AFTER_HTML = [
    (r"@[\w\d]+\b", ""),  # @nickname
    *((pattern, "") for pattern in CJK),
    (r"[\u002D\u058A\u05BE\u1400\u1806\u2010-\u2015\u2E17\u2E1A\u2E3A\u2E3B\u2E40\u301C\u3030\u30A0\uFE31\uFE32"
     r"\uFE58\uFE63\uFF0D]+", "-"),  # every kind of dash
    (r"[`´«»“”¨]", '"'),  # quotes to one standard
    (r"[‘’]", "'"),
    (r"&quot;?", ""),
    (r"&amp", ""),
    (r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", " "),  # IP addresses
    (r"\d:\d\d\s+$", ""),  # article ids
    (r"\\n", " "),
    (r"#\d{1,3}\b", ""),
    (r"#\d{5,}\b", ""),
    (r"\b\d{6,}\b", ""),
    (r"[\S]+\.(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)", ""),  # file names
    (r"[\"\']{2,}", r'"'),
    (r"[\.]{2,}", r" "),
    (BAD_PUNCT, r" "),
    (r"\s+\.\s+", r" "),
]
SEPARATORS = r"(?:\-|\_)"  # this-is-my-cute-cat / this_is_my_cute_cat: spaced out when more than 3
AFTER_BASIC_CLEAN = [
    (r"\b[a-zA-Z]{1,3}\d{3,15}\b", ""),  # jc6640
    (r"\b[a-zA-Z]+\d+[a-zA-Z]+\b", ""),  # jc6640vc
    (r"\b\d+[a-zA-Z]+\d+\b", ""),  # 6640vc231
    (r"(worldwide\s+)?(free\s+)?shipping", ""),
    (r"(free\s)?download(\sfree)?", ""),
    (r"\bclick\b\s(?:for|on)\s\w+", ""),
    (r"\b(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)(\simage[s]?)?", ""),
    (r"\bpage\s+\d+\b", ""),
    (r"\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b", r" "),  # j2d1a2a...
    (r"\b\d+\.?\d*[xх×]\d+\.?\d*\b", ""),  # sizes: 1920x1080 (Latin, Cyrillic x, times sign)
    (r"\b\s+\:\s+", r": "),
    (r"(\D[,\./])\b", r"\1 "),
    (r"\s+", " "),
    (r"^[\"\']([\w\W]+)[\"\']$", r"\1"),  # the official strip before this one is discarded, so none here
    (r"^[\'\_,\-\:;]", r""),
    (r"[\'\_,\-\:\-\+]$", r""),
    (r"^\.\S+$", ""),
]


def _substitute(text: str, steps) -> str:
    for pattern, replacement in steps:
        text = re.sub(pattern, replacement, text)
    return text


def basic_clean(text: str) -> str:
    """ftfy's fixes, HTML entities unescaped twice, then stripped (the strip diffusers' copy leaves out)."""
    import ftfy

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def clean_caption(caption) -> str:
    """One pass of PixArt-alpha's T5Embedder.clean_caption."""
    from bs4 import BeautifulSoup

    text = urllib.parse.unquote_plus(str(caption)).strip().lower()
    text = _substitute(text, BEFORE_HTML)
    text = BeautifulSoup(text, features="html.parser").text
    text = _substitute(text, AFTER_HTML)
    if len(re.findall(SEPARATORS, text)) > 3:
        text = re.sub(SEPARATORS, " ", text)
    text = basic_clean(text)
    return _substitute(text, AFTER_BASIC_CLEAN).strip()


def check_cleaning_available() -> None:
    """Raise unless captions can be cleaned (it needs beautifulsoup4 and ftfy), as diffusers finds them."""
    from diffusers.utils import is_bs4_available, is_ftfy_available

    missing = [name for name, ok in (("beautifulsoup4", is_bs4_available()), ("ftfy", is_ftfy_available())) if not ok]
    if missing:
        raise RuntimeError(f"clean_captions needs {' and '.join(missing)} (pip install {' '.join(missing)}),"
                           f" or set clean_captions: false")


def prepare_captions(captions: typing.Sequence[str], clean: bool) -> typing.List[str]:
    """Captions as PixArt-alpha's T5Embedder.text_preprocessing hands them to T5: cleaned twice, or
    only lowercased and stripped."""
    if not clean:
        return [str(caption).lower().strip() for caption in captions]
    check_cleaning_available()
    return [clean_caption(clean_caption(caption)) for caption in captions]
