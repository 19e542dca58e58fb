"""Several captioners per image: the job's `captioners:` list, three tiny model families (LLaVA, Qwen2-VL, Idefics3),
sampling seeded per sample, prompts that quote captions, the pad view, and each caption's own nouns,
CLIP score and T5 tokens."""
import numpy as np
import pytest
import torch

from pixcap.schemas import JobError, load_job
from pixcap.schemas import batch as B
from pixcap.schemas import stages as registry
from pixcap.schemas.records import CAPTIONER_META, MEMBER_META, captioners_of
from pixcap.schemas.stages import CaptionerConfig, ClipConfig, NounsConfig, T5TokensConfig
from pixcap.stages.caption import CaptionStage
from pixcap.stages.caption_views import expand_to_square, view_of
from pixcap.stages.captioner_rows import sample_seed
from pixcap.stages.sampling import top_p_filter

from tests.tiny_jobs import TINY_MODELS, with_tiny_models


@pytest.fixture(scope="module")
def long_config(tiny_models):
    return CaptionerConfig(name="long", model=str(tiny_models["llava"]), max_new_tokens=8, batch_size=4)


@pytest.fixture(scope="module")
def long_stage(long_config):
    return CaptionStage(long_config, primary=True)


@pytest.fixture(scope="module")
def sampled(tiny_models):
    return CaptionStage(CaptionerConfig(name="short", model=str(tiny_models["llava"]), max_new_tokens=8, batch_size=3,
                                        temperature=0.7, top_p=0.9), primary=False)


@pytest.fixture(scope="module")
def qwen(tiny_models):
    return CaptionStage(CaptionerConfig(name="short", model=str(tiny_models["qwen2vl"]), view="native",
                                        max_new_tokens=8, batch_size=3), primary=False)


def crops_for(stage, batch):
    """model_inputs' crop for this captioner, as the graph makes it on the CPU."""
    return {**batch, stage.rows.pixels: [stage.view.crop(np.asarray(image)) for image in batch[B.MODEL_IMAGE]]}


# -- the job ----------------------------------------------------------------------------------------------

def captioners_job(*captioners, **extra):
    return {"captioners": list(captioners), "clip": TINY_MODELS["clip"], **extra}


LONG = {"name": "long", "model": "tiny:llava"}


def test_a_caption_job_is_one_unnamed_captioner_and_its_fingerprint_keys_are_as_before():
    from pixcap.output.fingerprint import fingerprint

    job = load_job(with_tiny_models({}))
    assert [found.name for found in registry.model_stages(job)] == ["caption", "nouns", "clip"]
    assert registry.caption_names(job) == [""] and registry.record_schema(job).names[-1] == "aesthetic_score"
    keys = fingerprint(job, {})
    assert not [key for key in keys if key.startswith(("captioners", "classifiers", "t5_tokens", "clip.long_captions"))]
    assert "caption.prompt" in keys


def test_captioners_are_instances_and_each_has_its_columns():
    job = load_job(captioners_job(LONG, {"name": "short", "model": "tiny:qwen2vl", "view": "native",
                                        "prompt": 'Shorten "{long}"', "temperature": 0.7}))
    names = [found.name for found in registry.model_stages(job)]
    assert names[:2] == ["captioners.long", "captioners.short"] and "caption" not in names
    assert [found.kwargs for found in registry.model_stages(job)[:2]] == [{"primary": True}, {"primary": False}]
    schema = registry.record_schema(job)
    assert captioners_of(schema) == ["long", "short"]
    field = schema.field("caption_short")
    assert field.metadata[CAPTIONER_META] == b"short" and field.metadata[MEMBER_META] == b"short.txt"
    assert {"clip_score_long", "nouns_short", "n_grounded_short"} <= set(schema.names)
    assert not registry.reads_captions(job)
    assert registry.reads_captions(load_job(captioners_job({**LONG, "prompt": 'Given "{sidecar}", describe'})))


@pytest.mark.parametrize("captioners, expected", [
    ([{**LONG, "prompt": "Rewrite {short}"}, {"name": "short", "model": "tiny:llava"}],
     "captioners[0].prompt: quotes {short}, which is neither {sidecar} nor an earlier captioner's name"),
    ([LONG, {**LONG, "model": "tiny:qwen2vl"}], "captioners[1].name: 'long' is named twice"),
    ([{**LONG, "name": "Long_1"}], "captioners[0].name: 'Long_1' is not a name here"),
    ([{**LONG, "view": "tiles"}], "captioners[0].view: must be one of crop, pad, native"),
    ([{**LONG, "temperature": -1}], "captioners[0]: temperature must be >= 0 and top_p in (0, 1]"),
    ([{**LONG, "prompt": "a { brace"}], "captioners[0].prompt: "),
    ([{**LONG, "backend": "sidecar", "model": ""}, {"name": "model", "model": "tiny:llava"}],
     "column caption_model would be written twice"),
])
def test_wrong_captioners_are_one_line(captioners, expected):
    with pytest.raises(JobError) as error:
        load_job(captioners_job(*captioners))
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_caption_and_captioners_together_are_refused():
    with pytest.raises(JobError, match="caption and captioners: give one of them"):
        load_job(with_tiny_models(captioners_job(LONG)))


# -- sampling, seeded per sample --------------------------------------------------------------------------

def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.1, 0.5, 0.15, 0.25])
    assert top_p_filter(probs.clone(), 0.7).tolist() == pytest.approx([0.0, 0.5, 0.0, 0.25])  # 0.5 + 0.25 >= 0.7
    assert top_p_filter(probs.clone(), 0.5).tolist() == pytest.approx([0.0, 0.5, 0.0, 0.0])
    assert top_p_filter(probs.clone(), 1.0).tolist() == pytest.approx(probs.tolist())


def test_seeds_come_from_the_key_and_the_captioners_name():
    assert sample_seed("short", "sa_1") == sample_seed("short", "sa_1") != sample_seed("long", "sa_1")
    assert 0 <= sample_seed("short", "sa_2") < 2**63


def test_a_sampled_caption_depends_on_its_key_alone_not_on_its_batch(sampled, model_images, stage_batch):
    images = model_images(5, seed=7)
    batch = crops_for(sampled, stage_batch(images))
    together = sampled(batch)["caption_short"]  # mini-batches of 3 and 2
    alone = [sampled({k: [v[i]] for k, v in batch.items()})["caption_short"][0] for i in range(5)]
    reordered = sampled({k: list(v)[::-1] for k, v in batch.items()})["caption_short"][::-1]
    assert together == alone == reordered and all(together)
    greedy = CaptionStage(CaptionerConfig(name="short", model=sampled.config.model, max_new_tokens=8))(batch)
    assert together != greedy["caption_short"]  # it samples
    other_keys = {**batch, B.KEY: [f"other/{i}" for i in range(5)]}
    assert sampled(other_keys)["caption_short"] != together  # another key, another draw


# -- two families, quotes, views -----------------------------------------------------------------------

def test_qwen2vl_captions_natively_and_alone_equals_batched(qwen, model_images, stage_batch):
    assert type(qwen.model).__name__ == "Qwen2VLForConditionalGeneration" and qwen.view is None
    images = model_images(4, seed=8)
    out = qwen(stage_batch(images))
    alone = [qwen(stage_batch([image]))["caption_short"][0] for image in images]
    assert out["caption_short"] == alone and all(alone) and len(set(alone)) > 1
    assert out["caption_model_short"] == [qwen.config.model] * 4 and "caption" not in out  # not the primary


def test_idefics3_captions_through_the_hf_backend_and_alone_equals_batched(tiny_models, model_images, stage_batch):
    from transformers import AutoModelForImageTextToText

    stage = CaptionStage(CaptionerConfig(name="third", model=str(tiny_models["idefics3"]), view="native",
                                         max_new_tokens=6, batch_size=3), primary=False)
    # The hf backend's one loader: AutoModelForImageTextToText maps Idefics3's config to its model class.
    assert type(stage.model) is AutoModelForImageTextToText._model_mapping[type(stage.model.config)]
    assert type(stage.model).__name__ == "Idefics3ForConditionalGeneration" and stage.view is None
    assert stage.prompt.startswith("<|im_start|>User:<image>") and stage.prompt.endswith("Assistant:")
    images = model_images(4, seed=11)
    out = stage(stage_batch(images))
    alone = [stage(stage_batch([image]))["caption_third"][0] for image in images]
    assert out["caption_third"] == alone and all(alone) and len(set(alone)) > 1
    assert out["caption_model_third"] == [str(tiny_models["idefics3"])] * 4


def test_the_primary_writes_the_base_columns_and_its_crop_is_consumed(long_stage, model_images, stage_batch):
    batch = crops_for(long_stage, stage_batch(model_images(2)))
    out = long_stage(batch)
    assert out["caption"] == out["caption_long"] and all(out["caption"])
    assert long_stage.rows.pixels not in out and B.MODEL_IMAGE in out


def test_a_prompt_quotes_an_earlier_caption_and_a_row_without_it_is_rejected(tiny_models, model_images, stage_batch):
    quoting = CaptionStage(CaptionerConfig(name="short", model=str(tiny_models["qwen2vl"]), view="native",
                                           prompt='Condense "{long}"', max_new_tokens=6), primary=False)
    batch = stage_batch(model_images(3, seed=9), caption_long=["a red car", "", "the dog"])
    prompts = quoting.rows.prompts(batch, quoting.rows.outcomes(batch))
    assert prompts == ['Condense "a red car"', "", 'Condense "the dog"']
    out = quoting(batch)
    assert out[B.REJECT_REASON] == ["", "no_caption", ""] and out[B.REJECT_STAGE][1] == "captioners.short"
    assert out["caption_short"][1] == "" and out["caption_short"][0] and out["caption_short"][2]
    other = quoting(stage_batch(model_images(3, seed=9), caption_long=["a blue boat", "x", "the dog"]))
    assert other["caption_short"][2] == out["caption_short"][2]  # the same image and quote, the same caption


def test_the_pad_view_is_llavas_expand_to_square_then_its_crop(long_stage):
    from PIL import Image

    view = view_of(long_stage.processor.image_processor, "pad")
    image = np.random.default_rng(3).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    mean = tuple(int(m * 255) for m in long_stage.processor.image_processor.image_mean)
    square = Image.new("RGB", (64, 64), mean)  # LLaVA's expand2square, in PIL
    square.paste(Image.fromarray(image), (0, 12))
    assert np.array_equal(expand_to_square(image, mean), np.asarray(square))
    expected = long_stage.view.crop(np.asarray(square))
    assert np.array_equal(view.crop(image), expected) and view.size == long_stage.view.size


# -- each caption scored ---------------------------------------------------------------------------------

def test_nouns_clip_and_t5_for_each_caption_the_primarys_in_the_base_columns(tiny_models, model_images, stage_batch):
    from transformers import AutoTokenizer

    from pixcap.stages.clip import ClipStage
    from pixcap.stages.nouns import NounsStage
    from pixcap.stages.t5_tokens import T5TokensStage

    names = ["long", "short"]
    batch = stage_batch(model_images(2, seed=4), caption_long=["a red car on the road", "two dogs in a park"],
                        caption_short=["a car", "dogs"])
    batch = NounsStage(NounsConfig(), names)(batch)
    assert batch["nouns_long"] == [["car", "road"], ["dog", "park"]] and batch["nouns_short"] == [["car"], ["dog"]]
    assert batch[B.NOUNS] == batch["nouns_long"] and batch[B.N_NOUNS] == [2, 2]
    clip = ClipConfig(model=str(tiny_models["clip_config"]), pretrained=str(tiny_models["clip_checkpoint"]),
                      grounding_threshold=-1.0)
    out = ClipStage(clip, names)(dict(batch))
    single = ClipStage(clip)({**batch, "caption": batch["caption_short"], "nouns": batch["nouns_short"]})
    assert np.allclose(out["clip_score_short"], single["clip_score"], atol=1e-6)
    assert np.array_equal(out[B.CLIP_SCORE], out["clip_score_long"]) and out["grounded_nouns_short"] == [["car"], ["dog"]]
    t5 = T5TokensStage(T5TokensConfig(tokenizer=str(tiny_models["t5"]), max_length=5), names)(out)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models["t5"]))
    assert t5["t5_tokens_short"] == [len(tokenizer("a car").input_ids), len(tokenizer("dogs").input_ids)]
    assert t5["t5_truncated_long"] == [n > 5 for n in t5["t5_tokens_long"]] and t5["t5_tokens"] == t5["t5_tokens_long"]


def test_a_long_caption_is_the_mean_over_chunks_of_whole_sentences(tiny_models, model_images, stage_batch):
    import open_clip

    from pixcap.stages.clip import ClipStage, sentence_chunks

    words = lambda text: len(text.split())  # noqa: E731
    assert sentence_chunks("One two. Three four five. Six.", words, 5) == ["One two. Three four five.", "Six."]
    assert sentence_chunks("One two three. Four five six seven eight nine. Ten.", words, 5) == [
        "One two three.", "Four five six seven eight nine.", "Ten."]  # a sentence over the capacity stands alone
    assert sentence_chunks("Short one.", words, 5) == ["Short one."]
    config = ClipConfig(model=str(tiny_models["clip_config"]), pretrained=str(tiny_models["clip_checkpoint"]),
                        long_captions="sentences")
    stage = ClipStage(config)
    first, second = "A red car on a road " * 6 + ".", "A dog in a park near a tree " * 6 + "."
    caption = f"{first} {second}"  # over 75 tokens, each sentence under
    assert stage.token_count(caption) > 75 >= max(stage.token_count(first), stage.token_count(second))
    out = stage(stage_batch(model_images(1, seed=5), caption=[caption], nouns=[[]]))
    tokenizer = open_clip.get_tokenizer("tiny-clip")
    with torch.no_grad():
        image = stage.encode_images([np.asarray(model_images(1, seed=5)[0])])[0]
        texts = stage.model.encode_text(tokenizer([first, second])).float()
    texts = texts / texts.norm(dim=-1, keepdim=True)
    assert out[B.CLIP_SCORE][0] == pytest.approx(float((texts @ image).mean()), abs=1e-5)
    truncated = ClipStage(ClipConfig(model=config.model, pretrained=config.pretrained))(
        stage_batch(model_images(1, seed=5), caption=[caption], nouns=[[]]))
    assert truncated[B.CLIP_SCORE][0] != pytest.approx(out[B.CLIP_SCORE][0], abs=1e-4)


def test_an_int_column_ray_made_float_with_a_nan_is_written(models_cache):
    """Ray hands a column of ints holding a None over as float64 with NaN; the fragment writer takes it."""
    from pixcap.schemas.fragments import fragment_schema
    from pixcap.stages.write import fragment_table
    from tests.output.batches import finished_batch

    job = load_job(captioners_job(LONG, t5_tokens={"tokenizer": "tiny:t5"}, models_cache=models_cache))
    batch = finished_batch("p-00000", [0, 1], count=2, rejected={1})
    batch.update({"caption_long": ["a car", ""], "t5_tokens": np.array([3.0, np.nan]), "t5_tokens_long": [3, None]})
    table = fragment_table(batch, fragment_schema(registry.record_schema(job)))
    assert table.column("t5_tokens").to_pylist() == [3, None] and table.column("t5_tokens_long").to_pylist() == [3, None]
    assert table.column(B.REJECT_REASON).to_pylist() == ["", "decode_error"]


def test_the_shipped_caption_jobs_load_and_the_official_preset_has_pixart_alphas_settings():
    from pathlib import Path

    from pixcap.schemas import read_job_yaml

    jobs = Path(__file__).resolve().parents[2] / "jobs"
    official = load_job(read_job_yaml(str(jobs / "sam_llava_official.yaml")))
    (captioner,) = official.captioners
    assert (captioner.prompt, captioner.temperature, captioner.max_new_tokens, captioner.view) == (
        "describe this image in a very detailed manner", 0.2, 1024, "crop")
    modern = load_job(read_job_yaml(str(jobs / "sam_qwen25vl_7b.yaml")))
    assert [c.name for c in modern.captioners] == ["long", "short"] and "{long}" in modern.captioners[1].prompt
    assert [c.column for c in modern.classifiers] == ["nsfw_score", "watermark_score"]
    local = load_job(read_job_yaml(str(jobs / "local_captions.yaml")))
    assert [(c.model, c.view, c.temperature > 0) for c in local.captioners] == [
        ("tiny:llava", "pad", False), ("tiny:qwen2vl", "native", True)]
    assert [c.model for c in local.classifiers] == ["tiny:nsfw"]
