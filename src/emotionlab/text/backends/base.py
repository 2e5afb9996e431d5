"""What every text backend shares: the ``_Backend`` interface, probability maps and the linear heads.

A backend is a feature extractor + head that works on class ids ``0..C-1``; ``TextEmotionClassifier`` maps them to
label names. ``state()`` / ``load_state`` move a backend to and from JSON + arrays (no pickle).
"""
from __future__ import annotations

import numpy as np


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


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


def _val_score(proba: np.ndarray, y: np.ndarray, multi_label: bool) -> float:
    """Validation macro-F1: argmax for single-label, per-class tuned thresholds for multi-label."""
    from sklearn.metrics import f1_score

    if multi_label:
        th = tune_thresholds(proba, y)
        return float(f1_score(y, proba >= th, average="macro", zero_division=0))
    return float(f1_score(y, proba.argmax(1), average="macro", zero_division=0))


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
