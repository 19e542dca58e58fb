"""What a caption becomes before T5: PixArt's cleaning, taken from diffusers rather than rewritten.

PixArt-alpha's T5Embedder (diffusion/model/t5.py) runs `clean_caption` twice on every caption: URLs,
HTML, @names, CJK ranges, dashes and quotes, ids and file names go, and the text is lowercased.
diffusers' PixArtAlphaPipeline carries the same code and runs it at sampling when clean_caption=True,
its default; with clean_caption=False it still lowercases and strips. Training calls that very code
with the job's clean_captions, so a caption reaches T5 the same way in training, in `pixcap sample`
and in a user's own PixArtAlphaPipeline call.

diffusers quietly skips the cleaning when beautifulsoup4 or ftfy is missing. Here that is an error:
it would make training and sampling disagree without a word.
"""
from __future__ import annotations

import typing


def _pipeline_text_preprocessing():
    from diffusers.pipelines.pixart_alpha.pipeline_pixart_alpha import PixArtAlphaPipeline

    class PipelineTextPreprocessing:
        """The pipeline's caption methods, on an object that needs no models."""

        bad_punct_regex = PixArtAlphaPipeline.bad_punct_regex
        _clean_caption = PixArtAlphaPipeline._clean_caption
        _text_preprocessing = PixArtAlphaPipeline._text_preprocessing

    return PipelineTextPreprocessing()


def check_cleaning_available() -> None:
    """Raise unless diffusers can clean captions (it needs beautifulsoup4 and ftfy)."""
    from diffusers.utils import is_bs4_available, is_ftfy_available

    missing = [name for name, ok in (("beautifulsoup4", is_bs4_available()), ("ftfy", is_ftfy_available())) if not ok]
    if missing:
        raise RuntimeError(f"clean_captions needs {' and '.join(missing)} (pip install {' '.join(missing)}),"
                           f" or set clean_captions: false")


def prepare_captions(captions: typing.Sequence[str], clean: bool) -> typing.List[str]:
    """Captions as diffusers' PixArtAlphaPipeline hands them to T5 with clean_caption=clean."""
    if clean:
        check_cleaning_available()
    return _pipeline_text_preprocessing()._text_preprocessing(list(captions), clean_caption=clean)
