"""Scores a user can trust: temperature scaling, expected calibration error, reliability bins.

A network trained with cross-entropy is usually over-confident: its top score says 0.9 where it is right 75 %
of the time. One temperature ``T``, fitted on a validation split by minimizing the negative log-likelihood
(Guo et al. 2017, "On Calibration of Modern Neural Networks"), divides the logits; it never changes which class
wins, so accuracy is untouched, and it is the calibrator that holds up best on small validation sets. It is
stored in the model card (``calibration.temperature``) and applied by :class:`~.classifier.FaceClassifier`, so
every backend (PyTorch, ONNX Runtime, int8) and every surface gives the same calibrated scores.

Working from probabilities (not logits) keeps it exact for ensembles and int8 graphs too:
``softmax(log p / T)`` equals ``softmax(z / T)`` for any logits ``z`` whose softmax is ``p``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["apply_temperature", "card_calibration_metrics", "apply_temperature_multilabel", "calibration_report", "ece", "ece_multilabel",
           "fit_temperature", "fit_temperature_multilabel", "multilabel_calibration_report", "reliability",
           "temperature_of"]

_EPS = 1e-12
#: temperatures a card may carry: fits search [0.05, 20]; outside this range a card is broken or hostile (1e-300
#: would turn every score into NaN)
TEMPERATURE_RANGE = (0.01, 100)


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels).astype(np.int64)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"probabilities must be (N, classes) with one label each, got {p.shape} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {p.shape[1]}), got {y.min()}..{y.max()}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probabilities contain NaN or inf")
    return p, y


def _positive_temperature(temperature: float) -> float:
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return t


def _fit_log_t(loss, n: int, bounds: tuple[float, float], what: str) -> float:
    """The temperature minimizing ``loss(T)``: a bounded 1-D search over log T, rounded to 4 decimals."""
    from scipy.optimize import minimize_scalar

    if n < 20:
        raise ValueError(f"fitting a temperature needs at least 20 labelled {what}, got {n}")
    res = minimize_scalar(lambda lt: loss(math.exp(lt)), bounds=tuple(math.log(b) for b in bounds),
                          method="bounded", options={"xatol": 1e-4})
    return float(round(math.exp(res.x), 4))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``, row-wise, in float64, returned as float32 (T = 1 returns the input)."""
    t = _positive_temperature(temperature)
    p = np.asarray(probs)
    if t == 1.0:
        return p.astype(np.float32, copy=False)
    z = np.log(np.clip(np.asarray(p, np.float64), _EPS, 1.0)) / t
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _nll(p: np.ndarray, y: np.ndarray, t: float) -> float:
    q = apply_temperature(p, t).astype(np.float64)
    return float(-np.mean(np.log(np.clip(q[np.arange(len(y)), y], _EPS, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature that minimizes the validation NLL (a bounded 1-D search over log T)."""
    p, y = _check(probs, labels)
    return _fit_log_t(lambda t: _nll(p, y, t), len(y), bounds, "faces")


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Top-score confidence vs accuracy in ``bins`` equal-width bins: what a reliability diagram draws."""
    p, y = _check(probs, labels)
    conf, pred = p.max(1), p.argmax(1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out = {"edges": edges.tolist(), "count": [], "confidence": [], "accuracy": []}
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        out["count"].append(n)
        out["confidence"].append(float(conf[m].mean()) if n else None)
        out["accuracy"].append(float((pred[m] == y[m]).mean()) if n else None)
    return out


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - confidence| over the bins."""
    r = reliability(probs, labels, bins)
    n = sum(r["count"]) or 1
    return float(sum(c * abs(a - f) for c, a, f in zip(r["count"], r["accuracy"], r["confidence"]) if c) / n)


def calibration_report(probs: np.ndarray, labels: np.ndarray, temperature: float = 1.0, bins: int = 15) -> dict:
    """ECE, NLL and reliability bins of raw (``T = 1``) and calibrated scores: what ``evaluate`` reports."""
    p, y = _check(probs, labels)
    q = apply_temperature(p, temperature)
    return {"temperature": float(temperature), "bins": bins,
            "ece_uncalibrated": ece(p, y, bins), "ece": ece(q, y, bins),
            "nll_uncalibrated": _nll(p, y, 1.0), "nll": _nll(p, y, float(temperature)),
            "reliability_uncalibrated": reliability(p, y, bins), "reliability": reliability(q, y, bins)}


# ---------------------------------------------------------------- multi-label (independent sigmoid scores)
# A multi-label model (GoEmotions) scores each label on its own; one temperature divides every label's logit,
# ``sigmoid(logit(p) / T)``. It is monotonic per label, so a decision threshold ``th`` on raw scores becomes
# ``sigmoid(logit(th) / T)`` on calibrated ones and every decision stays the same. Calibration error is
# measured over all (text, label) scores as binary forecasts: per bin, |mean score - share of true labels|.


def _check_multilabel(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, np.float64)
    y = np.asarray(targets, np.float64)
    if p.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"multi-label scores and 0/1 targets must both be (N, labels), got {p.shape} and {y.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probabilities contain NaN or inf")
    return p, y


def apply_temperature_multilabel(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / T)`` element-wise (T = 1 returns the input); also maps thresholds."""
    t = _positive_temperature(temperature)
    p = np.asarray(probs)
    if t == 1.0:
        return p.astype(np.float32, copy=False)
    q = np.clip(np.asarray(p, np.float64), _EPS, 1.0 - _EPS)
    return (1.0 / (1.0 + np.exp(-(np.log(q) - np.log1p(-q)) / t))).astype(np.float32)


def _bce(p: np.ndarray, y: np.ndarray, t: float) -> float:
    q = np.clip(apply_temperature_multilabel(p, t).astype(np.float64), _EPS, 1.0 - _EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def fit_temperature_multilabel(probs: np.ndarray, targets: np.ndarray,
                               bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature minimizing the mean binary cross-entropy over every (text, label) score."""
    p, y = _check_multilabel(probs, targets)
    return _fit_log_t(lambda t: _bce(p, y, t), len(y), bounds, "rows")


def ece_multilabel(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """Calibration error of every (row, label) score as a binary forecast (count-weighted over ``bins``)."""
    p, y = _check_multilabel(probs, targets)
    p, y = p.ravel(), y.ravel()
    idx = np.clip(np.digitize(p, np.linspace(0.0, 1.0, bins + 1)[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(total / max(len(p), 1))


def multilabel_calibration_report(probs: np.ndarray, targets: np.ndarray, temperature: float = 1.0,
                                  bins: int = 15) -> dict:
    """ECE and binary NLL of raw and calibrated multi-label scores (what ``text-evaluate`` reports)."""
    p, y = _check_multilabel(probs, targets)
    q = apply_temperature_multilabel(p, temperature)
    return {"temperature": float(temperature), "bins": bins, "ece_uncalibrated": ece_multilabel(p, y, bins),
            "ece": ece_multilabel(q, y, bins), "nll_uncalibrated": _bce(p, y, 1.0), "nll": _bce(p, y, temperature)}


def card_calibration_metrics(probs: np.ndarray, labels: np.ndarray, card: dict, bins: int = 15) -> dict:
    """What ``evaluate`` reports for a model's calibrated scores ``probs`` (its card's temperature applied):
    ``ece``, ``ece_uncalibrated`` (the raw scores, recovered exactly with ``1 / T``), ``temperature`` and both
    reliability tables."""
    t = temperature_of(card)
    rep = calibration_report(apply_temperature(probs, 1.0 / t), labels, t, bins)
    return {"ece": rep["ece"], "ece_uncalibrated": rep["ece_uncalibrated"], "temperature": t,
            "reliability": rep["reliability"], "reliability_uncalibrated": rep["reliability_uncalibrated"]}


def temperature_of(card: dict) -> float:
    """The card's fitted temperature (``calibration.temperature``), 1.0 when it has none; a bad value is an
    error naming the card, not silently ignored."""
    cal = card.get("calibration") or {}
    if not isinstance(cal, dict):
        raise ValueError(f"model card {card.get('name', '?')}: calibration must be an object, got {cal!r:.60}")
    t = cal.get("temperature", 1.0)
    try:
        t = float(t) if not isinstance(t, bool) else float("nan")
    except (TypeError, ValueError):
        t = float("nan")
    if not (math.isfinite(t) and TEMPERATURE_RANGE[0] <= t <= TEMPERATURE_RANGE[1]):
        raise ValueError(f"model card {card.get('name', '?')}: calibration.temperature must be a finite number "
                         f"in [{TEMPERATURE_RANGE[0]}, {TEMPERATURE_RANGE[1]}], got {cal.get('temperature')!r}")
    return t
