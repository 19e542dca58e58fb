import numpy as np
import pytest

from pixcap.schemas import batch as cols
from pixcap.schemas.stages import NounsConfig
from pixcap.schemas.records import N_NOUNS, NOUNS
from pixcap.stages.nouns import NounsStage, load_tagger


@pytest.fixture(scope="module")
def stage():
    return NounsStage(NounsConfig(model="en_core_web_sm", batch_size=2))  # loads the mirror



def test_tagger_runs_without_parser_ner_or_senter(stage):
    assert not {"parser", "ner", "senter"} & set(stage.nlp.pipe_names)
    assert {"tagger", "lemmatizer"} <= set(stage.nlp.pipe_names)


def test_nouns_are_lowercased_lemmas_with_repeats_in_order(stage, stage_batch):
    captions = [
        "John and Mary walked their dogs in Paris near the dogs and two cats.",
        "",
        "A red car.",
    ]
    out = stage(stage_batch([None] * 3, caption=captions))
    assert out[NOUNS] == [["john", "mary", "dog", "paris", "dog", "cat"], [], ["car"]]
    assert out[N_NOUNS] == [6, 0, 1]


def test_rejected_row_gets_no_nouns(stage, stage_batch):
    batch = stage_batch([None] * 2, caption=np.array(["", "The dog sleeps."], dtype=object))
    batch[cols.REJECT_STAGE] = np.array(["caption", ""], dtype=object)
    batch[cols.REJECT_REASON] = np.array(["no_caption", ""], dtype=object)
    out = stage(batch)
    assert out[NOUNS] == [[], ["dog"]]
    assert out[N_NOUNS] == [0, 1]
    assert list(out[cols.REJECT_REASON]) == ["no_caption", ""]


def test_missing_model_is_a_one_line_error():
    with pytest.raises(ValueError, match="en_core_web_xx_missing") as error:
        load_tagger("en_core_web_xx_missing")
    assert "\n" not in str(error.value)
