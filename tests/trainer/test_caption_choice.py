"""caption_choice: one captioner by name, fixed proportions, or Sana's CLIP-score sampling, drawn per sample
from the seed (so a resumed run draws the same), and the counts per captioner that log.jsonl reports."""
import json
import math
from collections import Counter

import pytest

from pixcap.schemas import JobError
from pixcap.schemas.train_job import FilterConfig, check_caption_choice
from pixcap.trainer.caption_choice import choice_rng, choose_caption
from pixcap.trainer.data import PrepareSamples

from tests.pipeline.tarfiles import jpeg_bytes


def sample_of(key="s/1", scores=(0.30, 0.20), names=("long", "short")):
    record = {f"clip_score_{name}": score for name, score in zip(names, scores)}
    sample = {"__key__": key, "__url__": "shard-0.tar", "jpg": jpeg_bytes(1), "txt": b"the long caption",
              "json": json.dumps(record).encode()}
    sample.update({f"{name}.txt": f"the {name} caption".encode() for name in names})
    return sample, record


def draws(choice, n=4000, **kwargs):
    counts = Counter()
    for i in range(n):
        sample, record = sample_of(key=f"s/{i}", **kwargs)
        counts[choose_caption(sample, record, choice, choice_rng(0, 0, "shard-0.tar", f"s/{i}"))[0]] += 1
    return {name: count / n for name, count in counts.items()}


def test_one_captioner_by_name_and_none_when_the_sample_lacks_it():
    sample, record = sample_of()
    assert choose_caption(sample, record, {"captioner": "short"}, choice_rng(0, 0, "u", "k")) == ("short", "the short caption")
    assert choose_caption(sample, record, {"captioner": "other"}, choice_rng(0, 0, "u", "k")) is None


def test_proportions_are_kept_over_many_samples_and_absent_captioners_are_left_out():
    shares = draws({"proportions": {"long": 0.75, "short": 0.25, "sidecar": 0.5}})  # no sidecar caption here
    assert set(shares) == {"long", "short"}
    assert shares["long"] == pytest.approx(0.75, abs=0.03)  # 0.75 / (0.75 + 0.25)


def test_clip_score_sampling_is_the_softmax_of_scores_over_temperature():
    temperature = 0.1
    shares = draws({"clip_score": temperature}, scores=(0.30, 0.20))
    expected = math.exp(0.30 / temperature) / (math.exp(0.30 / temperature) + math.exp(0.20 / temperature))
    assert shares["long"] == pytest.approx(expected, abs=0.03)  # e / (e + 1) = 0.731
    assert draws({"clip_score": 0.001}, n=200, scores=(0.30, 0.20)) == {"long": 1.0}  # near-greedy


def test_a_draw_is_the_same_for_the_same_seed_segment_and_sample():
    sample, record = sample_of()
    picks = {choose_caption(sample, record, {"proportions": {"long": 1, "short": 1}}, choice_rng(7, 3, "u", "k"))[0]
             for _ in range(20)}
    assert len(picks) == 1
    other = [choose_caption(sample, record, {"proportions": {"long": 1, "short": 1}}, choice_rng(7, s, "u", "k"))[0]
             for s in range(40)]
    assert set(other) == {"long", "short"}  # another segment, another draw


def test_prepare_trains_on_the_chosen_caption_and_skips_a_sample_without_one():
    prepare = PrepareSamples("square", [32], FilterConfig(), caption_choice={"captioner": "short"})
    out = prepare.prepare(sample_of()[0])
    assert out["caption"] == "the short caption" and out["captioner"] == "short"
    assert PrepareSamples("square", [32], FilterConfig(), caption_choice={"captioner": "x"}).prepare(
        sample_of()[0]) == "no_chosen_caption"
    assert "captioner" not in PrepareSamples("square", [32], FilterConfig()).prepare(sample_of()[0])


@pytest.mark.parametrize("choice", [{"captioner": ""}, {"proportions": {"long": -1}}, {"proportions": {}},
                                    {"clip_score": 0}, {"clip_score": "hot"}, {"captioner": "a", "clip_score": 1},
                                    {"sana": 1}])
def test_a_wrong_caption_choice_is_one_line(choice):
    with pytest.raises(JobError, match="caption_choice: give one of"):
        check_caption_choice(choice)
