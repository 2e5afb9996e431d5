"""``naive_bayes``: NLTK Naive Bayes on word presence (seed 000, fig. 10), vectorized for prediction."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ..normalize import normalize_text, tokenize
from .base import _Backend, _softmax


class _NaiveBayes(_Backend):
    """NLTK ``NaiveBayesClassifier`` on word-presence features of the top words (seed 000, fig. 10).

    Training is NLTK's own; for prediction its per-feature probability tables are read into two matrices so that
    absent words count too (exactly NLTK's result with the full ``contains(w)`` True/False featureset, but
    vectorized instead of 2,000 dict look-ups per text).
    """

    kind = "naive_bayes"

    def __init__(self, top_words: int = 2000, **params):
        super().__init__(top_words=top_words, **params)
        self.vocab: list[str] = []

    def _presence(self, texts: list[str]):
        from scipy.sparse import csr_matrix

        index = {w: i for i, w in enumerate(self.vocab)}
        rows, cols = [], []
        for r, t in enumerate(texts):
            for c in {index[w] for w in tokenize(normalize_text(t)) if w in index}:
                rows.append(r)
                cols.append(c)
        return csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(texts), len(self.vocab)))

    def fit(self, texts, y, n_classes, multi_label, val=None):
        from nltk.classify import NaiveBayesClassifier

        toks = [set(tokenize(normalize_text(t))) for t in texts]
        df = Counter(w for s in toks for w in s)
        self.vocab = [w for w, _ in df.most_common(self.params["top_words"])]
        keep = set(self.vocab)
        train = []
        for s, yy in zip(toks, y):
            feats = {w: True for w in s if w in keep}  # absent words get NLTK's implicit value None (= False)
            targets = np.flatnonzero(yy) if multi_label else [int(yy)]
            train.extend((feats, int(k)) for k in targets)
        self.nltk_model = NaiveBayesClassifier.train(train)
        self._from_nltk(self.nltk_model, n_classes)
        return self

    def _from_nltk(self, clf, n_classes: int) -> None:
        v = len(self.vocab)
        self.log_prior = np.full(n_classes, -1e9)
        self.log_true = np.zeros((n_classes, v))
        self.log_none = np.zeros((n_classes, v))
        for c in clf.labels():
            self.log_prior[c] = clf._label_probdist.logprob(c) * math.log(2)
            for j, w in enumerate(self.vocab):
                pd = clf._feature_probdist.get((c, w))
                if pd is not None:
                    self.log_true[c, j] = pd.logprob(True) * math.log(2)
                    self.log_none[c, j] = pd.logprob(None) * math.log(2)

    def scores(self, texts):
        x = self._presence(texts)
        z = self.log_prior + x @ (self.log_true - self.log_none).T + self.log_none.sum(1)
        return _softmax(np.asarray(z))

    def most_informative(self, labels: list[str], n: int = 20) -> list[dict]:
        """NLTK's table: feature, value, the likeliest : least likely label and their probability ratio."""
        rows = []
        for value, table in (("True", self.log_true), ("False", self.log_none)):
            p = np.exp(table)  # (C, V)
            hi, lo = p.argmax(0), p.argmin(0)
            ratio = p.max(0) / np.maximum(p.min(0), 1e-300)
            for j in np.argsort(-ratio)[: n]:
                rows.append({"feature": f"contains({self.vocab[j]})", "value": value, "label": labels[hi[j]],
                             "vs": labels[lo[j]], "ratio": float(ratio[j])})
        rows.sort(key=lambda r: -r["ratio"])
        return rows[:n]

    def state(self):
        return {"vocab": self.vocab}, {"log_prior": self.log_prior, "log_true": self.log_true,
                                       "log_none": self.log_none}

    def load_state(self, cfg, arrays):
        self.vocab = cfg["vocab"]
        self.log_prior, self.log_true, self.log_none = (arrays["log_prior"], arrays["log_true"], arrays["log_none"])
