"""``tfidf_svm``: the ``tfidf_lr`` features + a linear SVM with cross-validated probability calibration."""
from __future__ import annotations

import numpy as np

from .base import _dense_linear, _Linear, _softmax
from .tfidf_lr import _TfidfLR


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
