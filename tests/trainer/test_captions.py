"""Captions reach T5 the same way in training, in the exported pipeline and in `pixcap sample`:
cleaned as PixArt's T5Embedder and diffusers' PixArtAlphaPipeline clean them."""
import pytest
import torch
from diffusers import PixArtAlphaPipeline

from pixcap.trainer import captions
from pixcap.trainer.export import export_pipeline
from pixcap.trainer.model import build_transformer
from pixcap.trainer.text import TextEncoder

RAW = ["A <b>Red</b> Cat sitting on a mat, see https://example.com/cats and @bob123  ",
       "“Quoted” — long—dash caption #12345678 photo.JPG", ""]


@pytest.fixture(scope="module")
def pipe(tiny_trainer_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe") / "pipeline"
    export_pipeline(build_transformer("tiny", 64, 32), str(tiny_trainer_models["t5"]), str(tiny_trainer_models["vae"]), out)
    return PixArtAlphaPipeline.from_pretrained(out)


def test_cleaning_is_pixarts(pipe):
    cleaned = captions.prepare_captions(RAW, clean=True)
    assert cleaned == pipe._text_preprocessing(RAW, clean_caption=True)  # the pipeline's own, on its own instance
    # What PixArt's clean_caption does, by hand: HTML, URLs and @names gone, lowercase, quotes and dashes unified.
    assert cleaned[0] == "a red cat sitting on a mat, see and"
    assert cleaned[1].startswith('"quoted" - long-dash caption') and "12345678" not in cleaned[1]
    assert cleaned[2] == ""
    # Without cleaning, diffusers still lowercases and strips; so does training.
    assert captions.prepare_captions(RAW, clean=False) == [c.lower().strip() for c in RAW]


@pytest.mark.parametrize("clean", [True, False])
def test_training_embeds_captions_as_the_pipeline_does(pipe, tiny_trainer_models, clean):
    text = TextEncoder(str(tiny_trainer_models["t5"]), clean_captions=clean)
    emb, mask = text.encode(RAW[:2])
    want, want_mask, negative, negative_mask = pipe.encode_prompt(
        RAW[:2], do_classifier_free_guidance=True, negative_prompt="", device="cpu", clean_caption=clean,
        max_sequence_length=120)
    torch.testing.assert_close(mask, want_mask.long())
    keep = mask.bool()  # the pipeline's padding positions are masked out of attention, compare the rest
    torch.testing.assert_close(emb[keep], want[keep])
    null, null_mask = text.null()  # a dropped caption is the pipeline's negative prompt
    torch.testing.assert_close(null_mask, negative_mask[:1].long())
    torch.testing.assert_close(null[null_mask.bool()], negative[:1][null_mask.bool()])


def test_cleaning_without_its_libraries_is_an_error(monkeypatch, tiny_trainer_models):
    """diffusers would quietly skip cleaning without beautifulsoup4; training and sampling would then disagree."""
    import diffusers.utils

    monkeypatch.setattr(diffusers.utils, "is_bs4_available", lambda: False)
    with pytest.raises(RuntimeError, match="beautifulsoup4"):
        TextEncoder(str(tiny_trainer_models["t5"]))
    assert captions.prepare_captions(["A Cat"], clean=False) == ["a cat"]
