"""Training with hyper-parameters tuned on the validation split only, and evaluation on any split.

Features (TF-IDF matrices, MiniLM embeddings) are computed once per split and reused across the grid, so a
C sweep costs only the logistic regressions.
"""
from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

from .backends.base import _val_score, tune_thresholds
from .classifier import TextEmotionClassifier
from .datasets import TextDataset

#: Default grids per model kind (small: a laptop CPU, tuned on validation).
GRIDS: dict[str, list[dict[str, Any]]] = {
    "naive_bayes": [{"top_words": 2000}],
    "tfidf_lr": [{"C": c, "class_weight": w} for c in (2.0, 8.0, 30.0) for w in (None, "balanced")],
    "tfidf_svm": [{"C": c} for c in (0.03, 0.1, 0.3)],
    "embed_lr": [{"C": c, "class_weight": w} for c in (1.0, 4.0, 16.0) for w in (None, "balanced")],
    "embed_mlp": [{"hidden": 512, "dropout": 0.3, "lr": 1e-3}],
    "finetune": [{"train_layers": 3, "epochs": 4}],
}


def evaluate_model(model: TextEmotionClassifier, ds: TextDataset, proba: np.ndarray | None = None) -> dict:
    """accuracy, macro-F1, per-class metrics and confusion matrix (multi-label: micro/macro-F1, exact match)."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    from ..training.metrics import classification_metrics

    if model.labels != ds.labels:
        raise ValueError(f"model {model.name!r} predicts {model.labels}, but dataset {ds.name!r} has {ds.labels}")
    t0 = time.perf_counter()
    proba = model.predict_proba(ds.texts) if proba is None else proba
    ms = 1000 * (time.perf_counter() - t0) / max(len(ds), 1)
    if not model.multi_label:
        m = classification_metrics(ds.y, proba.argmax(1), ds.labels)
    else:
        pred = model.decide(proba)
        p, r, f, s = precision_recall_fscore_support(ds.y, pred, zero_division=0)
        m = {"accuracy": float((pred == ds.y).all(1).mean()),  # exact match (subset accuracy)
             "macro_f1": float(f1_score(ds.y, pred, average="macro", zero_division=0)),
             "micro_f1": float(f1_score(ds.y, pred, average="micro", zero_division=0)),
             "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                 "support": int(s[i])} for i, lab in enumerate(ds.labels)},
             "labels": list(ds.labels), "n": len(ds),
             "thresholds": None if model.thresholds is None else [float(t) for t in model.thresholds]}
        # single-label view of the rows with exactly one gold label: argmax accuracy and its confusion matrix
        one = ds.y.sum(1) == 1
        if one.any():
            from sklearn.metrics import confusion_matrix

            yt, yp = ds.y[one].argmax(1), proba[one].argmax(1)
            m["single_label_accuracy"] = float((yt == yp).mean())
            m["confusion_matrix"] = confusion_matrix(yt, yp, labels=list(range(len(ds.labels)))).tolist()
    m["ms_per_text"] = round(ms, 3)
    if len(ds):
        m.update(calibration_metrics(model, proba, ds.y))
    return m


def calibration_metrics(model: TextEmotionClassifier, proba: np.ndarray, y: np.ndarray) -> dict:
    """``ece`` / ``ece_uncalibrated`` (and NLL) of the model's scores, with its card temperature and without.

    Single-label: top-label ECE over 15 bins; multi-label: every (text, label) score as a binary forecast.
    ``proba`` are the model's (calibrated) scores; the raw ones are recovered exactly with ``1 / T``.
    """
    from ..models.calibration import (apply_temperature, apply_temperature_multilabel, calibration_report,
                                      multilabel_calibration_report)

    t = model.temperature
    if model.multi_label:
        rep = multilabel_calibration_report(apply_temperature_multilabel(proba, 1.0 / t), y, t)
    else:
        rep = calibration_report(apply_temperature(proba, 1.0 / t), y, t)
    return {"temperature": t, **{k: round(float(rep[k]), 4)
                                 for k in ("ece", "ece_uncalibrated", "nll", "nll_uncalibrated")}}


def _features(kind: str, splits: dict[str, TextDataset], cache: dict) -> dict:
    """Shared per-split features for kinds whose grid only changes the head."""
    if kind in ("embed_lr", "embed_mlp"):
        from .embed import embed_texts

        if "embed" not in cache:
            cache["embed"] = {k: embed_texts(d.texts) for k, d in splits.items() if k in ("train", "val")}
        return cache["embed"]
    return {}


def train_tuned(kind: str, splits: dict[str, TextDataset], grid: list[dict] | None = None,
                name: str | None = None, cache: dict | None = None, log=print,
                metric: str = "macro_f1", init: TextEmotionClassifier | None = None) -> TextEmotionClassifier:
    """Fit every grid point on train, keep the best on validation macro-F1 (or accuracy); the card keeps the sweep.

    ``init`` (finetune only): an earlier fine-tuned model to continue training from; the grid then holds the
    continuation's settings (extra epochs, learning rates), and the card records the earlier run.
    """
    if init is not None and (kind != "finetune" or init.kind != "finetune"):
        raise ValueError("init (continued training) is only supported for finetune models")
    cache = {} if cache is None else cache
    tr, va = splits["train"], splits["val"]
    grid = grid or GRIDS[kind]
    feats = _features(kind, splits, cache)
    x_tfidf = None
    best, best_score, sweep = None, -1.0, []
    t0 = time.perf_counter()
    for params in grid:
        t1 = time.perf_counter()
        m = TextEmotionClassifier(kind, name=name or f"{kind}-{tr.name}", **params)
        extra: dict = {}
        if kind in ("embed_lr", "embed_mlp"):
            extra["x"] = feats["train"]
            if kind == "embed_mlp":
                extra["x_val"] = feats["val"]
        if kind in ("tfidf_lr", "tfidf_svm"):
            if x_tfidf is None:
                x_tfidf = m.backend.fit_features(tr.texts)
                vec = (m.backend.word, m.backend.char)
            else:
                m.backend.word, m.backend.char = vec
            extra["x"] = x_tfidf
        if kind == "finetune":
            extra.update(log=log, select=metric)
            if init is not None:
                if init.labels != tr.labels or int(init.params.get("train_layers", 3)) != int(
                        params.get("train_layers", 3)):
                    raise ValueError("init model does not match the dataset labels / number of tuned layers")
                extra["init"] = init.backend._tuned_state()
        m.fit(tr.texts, tr.y, tr.labels, tr.multi_label,
              val=(va.texts, va.y) if kind in ("embed_mlp", "finetune") else None, **extra)
        if kind in ("embed_lr", "embed_mlp"):
            pv = m.backend.head.proba(feats["val"]) if kind == "embed_lr" else m.backend._proba(feats["val"])
        elif kind == "finetune":
            pv = m.backend.scores(va.texts)
        else:
            pv = m.predict_proba(va.texts)
        if tr.multi_label:
            m.thresholds = tune_thresholds(pv, va.y)
        f1 = _val_score(pv, va.y, tr.multi_label)
        acc = None if tr.multi_label else float((pv.argmax(1) == va.y).mean())
        score = acc if metric == "accuracy" and acc is not None else f1
        sweep.append({"params": params, "val_macro_f1": round(f1, 4), "val_accuracy": acc,
                      "seconds": round(time.perf_counter() - t1, 1)})
        if kind == "finetune" and m.backend.history:
            sweep[-1]["history"] = m.backend.history
            sweep[-1]["best_epoch"] = getattr(m.backend, "best_epoch", None)
        log(f"  {kind} {tr.name} {params} val macro-F1 {f1:.4f}"
            + (f" accuracy {acc:.4f}" if acc is not None else "") + f" ({time.perf_counter() - t1:.0f}s)")
        if score > best_score:
            best, best_score, best_f1, best_acc = m, score, f1, acc
    best.card.update({"dataset": tr.name, "val_macro_f1": round(best_f1, 4), "sweep": sweep,
                      "train_seconds_total": round(time.perf_counter() - t0, 1), "tuned_for": metric})
    if init is not None:  # the earlier run this one continued from (its training time is added)
        best.card["continued_from"] = {"params": init.params, "val_accuracy": init.card.get("val_accuracy"),
                                       "val_macro_f1": init.card.get("val_macro_f1"),
                                       "train_seconds": init.card.get("train_seconds")}
        best.card["train_seconds_total"] = round(best.card["train_seconds_total"]
                                                 + float(init.card.get("train_seconds") or 0), 1)
    if best_acc is not None:
        best.card["val_accuracy"] = round(best_acc, 4)
    return best


def tune_ensemble(members: list[TextEmotionClassifier], val: TextDataset, step: float = 0.1,
                  probas: list[np.ndarray] | None = None, name: str | None = None,
                  metric: str = "macro_f1", max_bytes: int | None = None) -> TextEmotionClassifier:
    """Weights on a simplex grid maximizing a validation metric (thresholds re-tuned for multi-label).

    ``metric="accuracy"`` is for single-label sets whose target is accuracy (CrowdFlower); the card then also
    records ``val_accuracy``. Members with weight 0 are left out of the result, so they cost nothing when it is
    saved; ``max_bytes`` skips weightings whose non-zero members together save more array bytes than that (a
    shipping budget: two fine-tuned MiniLMs do not fit 25 MB).
    """
    if metric not in ("macro_f1", "accuracy") or (metric == "accuracy" and val.multi_label):
        raise ValueError(f"metric must be 'macro_f1' (or 'accuracy' for single-label sets), got {metric!r}")

    def score(p: np.ndarray) -> float:
        if metric == "accuracy":
            return float((p.argmax(1) == val.y).mean())
        return _val_score(p, val.y, val.multi_label)

    probas = probas or [m.predict_proba(val.texts) for m in members]
    sizes = [m.nbytes() for m in members] if max_bytes else [0] * len(members)
    ticks = np.round(np.arange(0, 1 + 1e-9, step), 3)
    best_w, best_s = None, -1.0
    for w in itertools.product(ticks, repeat=len(members) - 1):
        last = 1 - sum(w)
        if last < -1e-9:
            continue
        ws = list(w) + [max(last, 0.0)]
        if max_bytes and sum(b for b, wi in zip(sizes, ws) if wi > 0) > max_bytes:
            continue
        p = sum(wi * pi for wi, pi in zip(ws, probas))
        s = score(p)
        if s > best_s:
            best_w, best_s = ws, s
    if best_w is None:
        raise ValueError(f"no weighting of the members fits max_bytes={max_bytes} (member bytes: {sizes})")
    keep = [i for i, w in enumerate(best_w) if w > 0]
    ens = TextEmotionClassifier.ensemble([members[i] for i in keep], [float(best_w[i]) for i in keep],
                                         name=name or f"ensemble-{val.name}")
    p = sum(wi * pi for wi, pi in zip(best_w, probas))
    if val.multi_label:
        ens.thresholds = tune_thresholds(p, val.y)
    ens.card.update({"dataset": val.name, "val_macro_f1": round(_val_score(p, val.y, val.multi_label), 4),
                     "weights": ens.weights, "members": [m.name for m in ens.members],
                     "candidates": {m.name: float(w) for m, w in zip(members, best_w)}, "tuned_for": metric})
    if metric == "accuracy":
        ens.card["val_accuracy"] = round(best_s, 4)
    return ens


#: model kinds whose fit does not use the validation split (so they can be refit on train + val as chosen)
REFIT_KINDS = ("naive_bayes", "tfidf_lr", "tfidf_svm", "embed_lr", "finetune")


def refit_train_val(model: TextEmotionClassifier, splits: dict[str, TextDataset],
                    log=print) -> TextEmotionClassifier:
    """Fit ``model``'s kind and hyper-parameters again on train + val (ensembles: every member, same weights).

    Why: once hyper-parameters, checkpoints and ensemble weights are chosen on validation, training once more on
    train + validation with those choices frozen is the standard last step when labels are few or noisy (12.5 %
    more data on an 80/10/10 split). The refit model has seen validation, so its validation score is no selection
    signal any more: the card keeps the scores of the model it was refit from, and only test can judge it.
    Fine-tunes run their chosen number of epochs with no checkpoint selection. Kinds that need validation inside
    ``fit`` (``embed_mlp`` early stopping, multi-label thresholds) are refused rather than silently changed.
    """
    tr, va = splits["train"], splits["val"]
    if tr.multi_label:
        raise ValueError(f"{tr.name}: multi-label thresholds are tuned on validation; refit is single-label only")
    if model.kind == "ensemble":
        members = [refit_train_val(m, splits, log) for m in model.members]
        ens = TextEmotionClassifier.ensemble(members, model.weights, name=model.name)
        ens.card.update({k: v for k, v in model.card.items() if k != "test"})
        ens.card.update({"refit": "train+val", "refit_from": {"val_accuracy": model.card.get("val_accuracy"),
                                                              "val_macro_f1": model.card.get("val_macro_f1")},
                         "members": [m.name for m in members]})
        ens.card.pop("val_accuracy", None)
        ens.card.pop("val_macro_f1", None)
        return ens
    if model.kind not in REFIT_KINDS:
        raise ValueError(f"{model.name}: a {model.kind} model uses validation while fitting; refit supports "
                         f"{', '.join(REFIT_KINDS)}")
    if model.labels != tr.labels:
        raise ValueError(f"{model.name}: labels {model.labels} do not match the dataset's {tr.labels}")
    texts, y = tr.texts + va.texts, np.concatenate([tr.y, va.y])
    params = dict(model.params)
    m = TextEmotionClassifier(model.kind, name=model.name, **params)
    t0 = time.perf_counter()
    m.fit(texts, y, tr.labels, False, **({"log": log} if model.kind == "finetune" else {}))
    if model.kind == "finetune" and model.backend.storage == "int8":  # the storage chosen with it, kept
        m.quantize()
    m.card.update({"dataset": tr.name, "refit": "train+val", "tuned_for": model.card.get("tuned_for"),
                   "refit_from": {"val_accuracy": model.card.get("val_accuracy"),
                                  "val_macro_f1": model.card.get("val_macro_f1"),
                                  "n_train": model.card.get("n_train")},
                   "train_seconds_total": round(time.perf_counter() - t0, 1)})
    log(f"  {model.kind} {tr.name} {params} refit on {len(texts)} train+val texts "
        f"({time.perf_counter() - t0:.0f}s)")
    return m
