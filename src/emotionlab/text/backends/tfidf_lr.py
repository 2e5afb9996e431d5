"""``tfidf_lr``: TF-IDF of word and character n-grams, then logistic regression."""
from __future__ import annotations

import numpy as np

from ..normalize import normalize_text, tokenize
from .base import _Backend, _Linear


def _word_ngrams(tokens: list[str], n_max: int) -> list[str]:
    out = list(tokens)
    for n in range(2, n_max + 1):
        out.extend(" ".join(tokens[i: i + n]) for i in range(len(tokens) - n + 1))
    return out


class _TfidfLR(_Backend):
    """TF-IDF of word 1..n-grams (TweetTokenizer tokens) and character n-grams, then logistic regression."""

    kind = "tfidf_lr"

    def __init__(self, C: float = 4.0, word_ngrams: int = 2, char_ngrams: tuple[int, int] = (2, 5),
                 max_word_features: int = 150_000, max_char_features: int = 200_000, min_df: int = 2,
                 class_weight: str | None = None, **params):
        super().__init__(C=C, word_ngrams=word_ngrams, char_ngrams=list(char_ngrams),
                         max_word_features=max_word_features, max_char_features=max_char_features, min_df=min_df,
                         class_weight=class_weight, **params)

    def _vectorizers(self, word_vocab=None, char_vocab=None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        p = self.params
        n = int(p["word_ngrams"])
        word = TfidfVectorizer(analyzer=lambda t: _word_ngrams(tokenize(t), n), sublinear_tf=True,
                               min_df=1 if word_vocab else p["min_df"], max_features=p["max_word_features"],
                               vocabulary=word_vocab, dtype=np.float32)
        char = TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(p["char_ngrams"]), lowercase=False,
                               sublinear_tf=True, min_df=1 if char_vocab else p["min_df"],
                               max_features=p["max_char_features"], vocabulary=char_vocab, dtype=np.float32)
        return word, char

    def features(self, texts: list[str]):
        from scipy.sparse import hstack

        norm = [normalize_text(t) for t in texts]
        return hstack([self.word.transform(norm), self.char.transform(norm)]).tocsr()

    def fit_features(self, texts):
        from scipy.sparse import hstack

        norm = [normalize_text(t) for t in texts]
        self.word, self.char = self._vectorizers()
        return hstack([self.word.fit_transform(norm), self.char.fit_transform(norm)]).tocsr()

    def fit(self, texts, y, n_classes, multi_label, val=None, x=None):
        x = self.fit_features(texts) if x is None else x
        self.head = _Linear(self.params["C"], self.params["class_weight"]).fit(x, y, n_classes, multi_label)
        return self

    def scores(self, texts):
        return self.head.proba(self.features(texts))

    def state(self):
        def vocab(v):
            terms = [None] * len(v.vocabulary_)
            for t, i in v.vocabulary_.items():
                terms[i] = t
            return terms

        cfg = {"word_vocab": vocab(self.word), "char_vocab": vocab(self.char), "multi_label": self.head.multi_label}
        return cfg, {"word_idf": self.word.idf_, "char_idf": self.char.idf_,
                     "coef": self.head.coef.astype(np.float16), "intercept": self.head.intercept}

    def load_state(self, cfg, arrays):
        self.word, self.char = self._vectorizers({t: i for i, t in enumerate(cfg["word_vocab"])},
                                                 {t: i for i, t in enumerate(cfg["char_vocab"])})
        self.word.idf_ = arrays["word_idf"].astype(np.float64)
        self.char.idf_ = arrays["char_idf"].astype(np.float64)
        self.head = _Linear(self.params["C"])
        self.head.multi_label = cfg["multi_label"]
        self.head.coef = arrays["coef"].astype(np.float32)
        self.head.intercept = arrays["intercept"].astype(np.float32)
