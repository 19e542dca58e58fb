"""Nouns: the lowercased lemmas of a caption's NOUN and PROPN tokens, by spaCy's tagger.

Repeats are kept, in caption order, so `n_nouns` measures how many concepts a caption names. With
several captioners, each caption gets its own (nouns_long, n_nouns_long), and the base columns are
the primary's.
"""
from __future__ import annotations

import spacy

from pixcap.schemas import rejects as R
from pixcap.schemas import batch as B
from pixcap.schemas.models import SPACY_MODEL_MIRRORS
from pixcap.schemas.records import CAPTION, captioner_column
from pixcap.schemas.stages import NounsConfig

from .outcomes import RowOutcomes, error_text

NOUN_POS = frozenset({"NOUN", "PROPN"})
STAGE = "nouns"

# Components that tagging and lemmas do not need: leaving them out roughly halves the time.
EXCLUDED_COMPONENTS = ["parser", "ner", "senter"]


def load_tagger(name: str):
    """spaCy with only what tagging needs; ValueError naming the model when it is not installed."""
    for candidate in (name, *SPACY_MODEL_MIRRORS.get(name, ())):
        if spacy.util.is_package(candidate) or spacy.util.ensure_path(candidate).is_dir():
            return spacy.load(candidate, exclude=EXCLUDED_COMPONENTS)
    mirrors = SPACY_MODEL_MIRRORS.get(name, ())
    also = f" (nor its mirror {', '.join(mirrors)})" if mirrors else ""
    raise ValueError(f"spaCy model {name!r} is not installed{also}; pip install it or set nouns.model")


def doc_nouns(doc) -> list:
    return [token.lemma_.lower() for token in doc if token.pos_ in NOUN_POS]


class NounsStage:
    """Adds `nouns` and `n_nouns` to each caption; rejected rows get none."""

    def __init__(self, config: NounsConfig, captioners=("",)):
        self.config = config
        self.captioners = list(captioners)  # their names, the primary first; [""]: a `caption:` job's one
        self.nlp = load_tagger(config.model)

    def __call__(self, batch: dict) -> dict:
        out = dict(batch)
        for name in self.captioners:
            found = self.caption_nouns(out, name)
            out.update(found)
            if name and name == self.captioners[0]:  # the primary's are the base columns too
                out[B.NOUNS], out[B.N_NOUNS] = found[captioner_column(B.NOUNS, name)], found[captioner_column(B.N_NOUNS, name)]
        return out

    def caption_nouns(self, batch: dict, name: str) -> dict:
        """The reject columns, and nouns and n_nouns of one captioner's captions."""
        rows = RowOutcomes(batch, STAGE)
        captions = batch[captioner_column(CAPTION, name)]
        nouns = [[] for _ in range(len(rows))]
        live = rows.live_rows()
        try:  # spaCy's pipe batches the whole batch; rows are retried alone only if it fails
            for i, doc in zip(live, self.nlp.pipe([captions[i] or "" for i in live], batch_size=self.config.batch_size)):
                nouns[i] = doc_nouns(doc)
        except Exception:  # find the caption that breaks the tagger; the others keep their nouns
            for i in live:
                try:
                    nouns[i] = doc_nouns(self.nlp(captions[i] or ""))
                except Exception as e:
                    rows.reject(i, R.NOUNS_ERROR, error_text(e))
        return {**rows.columns(), captioner_column(B.NOUNS, name): nouns,
                captioner_column(B.N_NOUNS, name): [len(n) for n in nouns]}
