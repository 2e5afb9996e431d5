"""``TextEmotionClassifier``: every text model behind one scikit-learn estimator, saved as JSON + safetensors.

scikit-learn's contract: ``__init__`` only stores its arguments (``kind``, ``name`` and the backend's
hyper-parameters), so ``get_params`` / ``set_params`` / ``sklearn.base.clone`` work; ``fit(X, y)`` learns
``classes_`` from ``y``; ``predict`` gives labels and ``predict_proba`` an (n, k) array in ``classes_`` order.
Calling the model (``clf(texts)``) gives what the CLI and the server print: per text, ``[{"label", "score"}]``
sorted by score. Saved models are one JSON file (config, vocabularies, card) plus one safetensors file: no pickle.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .backends.base import tune_thresholds
from .normalize import check_text
from .store import FORMAT_VERSION, KINDS, backend_arrays, read_model_files, write_model_files



class TextEmotionClassifier(ClassifierMixin, BaseEstimator):
    """One scikit-learn classifier for every text model kind; ``clf(texts)`` answers like a HF pipeline.

    ``kind`` picks the backend (``KINDS``; ``ensemble`` models are ``TextEnsemble``), ``name`` is what cards, the
    CLI and the server call it, and any other keyword is a hyper-parameter of the backend (``C=4.0``,
    ``train_layers=3``...): ``get_params`` lists them next to ``kind`` and ``name``.
    """

    multi_label: bool = False  # set by fit / load
    _by_kind: dict[str, type[TextEmotionClassifier]] = {}  # subclasses with a kind of their own (ensemble)
    thresholds: np.ndarray | None = None  # multi-label decision thresholds, tuned on validation

    def __init__(self, kind: str = "tfidf_lr", name: str | None = None, **params: Any):
        self.kind = kind
        self.name = name
        self.params = params

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if isinstance(cls.__dict__.get("kind"), str):
            TextEmotionClassifier._by_kind[cls.kind] = cls

    # -- scikit-learn parameters
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """``kind``, ``name`` and every backend hyper-parameter given to ``__init__`` or ``set_params``."""
        out = super().get_params(deep)
        out.update(self.params)
        return out

    def set_params(self, **params: Any) -> TextEmotionClassifier:
        """Change parameters; a changed kind or hyper-parameter takes effect at the next ``fit``."""
        own = set(super().get_params(deep=False))
        for key, value in params.items():
            if key in own:
                setattr(self, key, value)
            elif self.kind == "ensemble":
                raise ValueError(f"invalid parameter {key!r} for a text ensemble; valid: {', '.join(sorted(own))}")
            else:
                self.params[key] = value
        self.__dict__.pop("_backend", None)
        return self

    @property
    def backend(self):
        """The kind's feature extractor + head (built on first use from ``kind`` and the hyper-parameters)."""
        if self.__dict__.get("_backend") is None:
            from .backends import BACKENDS

            if self.kind not in BACKENDS:
                raise ValueError(f"unknown text model kind {self.kind!r}; expected one of {', '.join(KINDS)}")
            self._backend = BACKENDS[self.kind](**self.params)
        return self._backend

    @property
    def labels(self) -> list[str]:
        """The label names in output order (``classes_`` as a list; empty before ``fit``)."""
        classes = getattr(self, "classes_", None)
        return [] if classes is None else classes.tolist()

    @labels.setter
    def labels(self, value: list[str]) -> None:
        self.classes_ = np.asarray(list(value))

    @property
    def card(self) -> dict:
        """The model card: training facts and validation scores, saved with the model."""
        return self.__dict__.setdefault("_card", {})

    @card.setter
    def card(self, value: dict) -> None:
        self._card = value

    @property
    def temperature(self) -> float:
        """The fitted temperature in the card (``calibration.temperature``), 1.0 before ``fit_temperature``."""
        from ..models.calibration import temperature_of

        return temperature_of({"name": self.name, **self.card})

    def _calibrated(self, proba: np.ndarray) -> np.ndarray:
        t = self.temperature
        if t == 1.0:
            return proba
        from ..models.calibration import apply_temperature, apply_temperature_multilabel

        return (apply_temperature_multilabel if self.multi_label else apply_temperature)(proba, t)

    def fit_temperature(self, X, y) -> dict:
        """Fit the temperature on held-out texts (the validation split, never test) and store it in the card.

        Single-label models: ``softmax(log p / T)``; multi-label: ``sigmoid(logit(p) / T)`` per label, with the
        decision thresholds mapped through the same function so every decision stays what it was. Accuracy and
        F1 are unchanged; only how far a score can be trusted changes. -> the card's ``calibration`` entry.
        """
        import datetime as _dt

        from ..models.calibration import (apply_temperature_multilabel, calibration_report, fit_temperature,
                                          fit_temperature_multilabel, multilabel_calibration_report)

        texts = self._check(X)
        y = np.asarray(y)
        raw = self._proba(texts) if texts else np.zeros((0, len(self.labels)), np.float32)
        old = self.temperature
        if self.multi_label:
            t = fit_temperature_multilabel(raw, y)
            rep = multilabel_calibration_report(raw, y, t)
            if self.thresholds is not None:  # thresholds live in calibrated-score space: from old T to new T
                self.thresholds = apply_temperature_multilabel(np.asarray(self.thresholds, np.float64),
                                                               t / old).astype(np.float64)
        else:
            t = fit_temperature(raw, y)
            rep = calibration_report(raw, y, t)
        cal = {"method": "temperature", "temperature": t, "n_fit": len(texts), "date": _dt.date.today().isoformat(),
               **{f"fit_{k}": round(rep[k], 4) for k in ("ece_uncalibrated", "ece")}}
        self.card["calibration"] = cal
        return cal

    @property
    def members(self) -> list[TextEmotionClassifier]:
        """Ensemble members (none for a single model)."""
        return []

    # -- training
    @classmethod
    def ensemble(cls, members: list[TextEmotionClassifier], weights: list[float] | None = None,
                 name: str = "ensemble") -> TextEmotionClassifier:
        """Weighted average of already fitted members that share a label set (a ``TextEnsemble``)."""
        return TextEmotionClassifier._by_kind["ensemble"].of(members, weights, name=name)

    def _targets(self, X, y, labels, multi_label) -> tuple[list[str], np.ndarray, list, bool]:
        """Texts, class ids (or an (N, C) 0/1 matrix), label names and multi-label flag from ``fit``'s inputs."""
        if isinstance(X, str):
            raise ValueError("X must be a list of texts, not one string")
        texts = list(X)
        y = np.asarray(y)
        if len(texts) != len(y):
            raise ValueError(f"{len(texts)} texts but {len(y)} labels")
        if len(texts) == 0:
            raise ValueError("no training texts")
        if multi_label is None:
            multi_label = y.ndim == 2
        if labels is None:  # scikit-learn style: the classes are whatever y holds
            if multi_label:
                labels = list(range(y.shape[1])) if y.ndim == 2 else []
            else:
                if y.ndim != 1:
                    raise ValueError(f"y must be one label per text, got shape {y.shape}")
                classes, y = np.unique(y, return_inverse=True)
                labels = classes.tolist()
        elif not multi_label and y.ndim == 1 and y.dtype.kind in "USO":  # label names given as y
            index = {lab: i for i, lab in enumerate(labels)}
            unknown = sorted({str(v) for v in y if v not in index})
            if unknown:
                raise ValueError(f"labels {unknown[:3]} in y are not among {list(labels)}")
            y = np.asarray([index[v] for v in y])
        labels = list(labels)
        if multi_label and (y.ndim != 2 or y.shape[1] != len(labels)):
            raise ValueError(f"multi-label y must be (N, {len(labels)}), got {y.shape}")
        if not multi_label and (y.ndim != 1 or y.dtype.kind not in "iub" or y.min() < 0 or y.max() >= len(labels)):
            raise ValueError(f"y must hold class ids 0..{len(labels) - 1}")
        return texts, y, labels, bool(multi_label)

    def fit(self, X, y, labels: list[str] | None = None, multi_label: bool | None = None,
            val: tuple[list[str], np.ndarray] | None = None, **features) -> TextEmotionClassifier:
        """Train on texts ``X``; ``y`` holds labels (``classes_`` = their sorted set), or with ``labels``, ids.

        ``labels`` (names in output order) makes ``y`` class ids ``0..C-1``, or an (N, C) 0/1 matrix when
        ``multi_label`` (inferred from a 2-D ``y`` when not given). ``val`` (texts, y) is used only for early
        stopping (MLP, fine-tune checkpoints) and multi-label thresholds; ``features`` are backend extras
        (precomputed ``x``, ``log``...).
        """
        texts, y, labels, multi_label = self._targets(X, y, labels, multi_label)
        backend = self.backend  # checks the kind before any work
        self.labels, self.multi_label = labels, multi_label
        self.thresholds = None
        self.card.pop("calibration", None)  # a temperature belongs to the weights it was fitted for
        val_proba = features.pop("val_proba", None)
        t0 = time.perf_counter()
        backend.fit(texts, y, len(labels), multi_label, val=val, **features)
        self.card["train_seconds"] = round(time.perf_counter() - t0, 2)
        self.card["n_train"] = len(texts)
        if getattr(backend, "encoder_source", None):
            self.card["init_encoder"] = backend.encoder_source
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
            raise ValueError(f"model {self.name or self.kind!r} is not fitted")
        return [check_text(t, f"text {i}") for i, t in enumerate(texts)]

    def _proba(self, texts: list[str]) -> np.ndarray:
        """Probabilities of checked, non-empty ``texts``."""
        return np.asarray(self.backend.scores(texts), np.float32)

    def predict_proba(self, X) -> np.ndarray:
        """(N, C) probabilities in ``classes_`` order: softmax rows (single-label) or sigmoids (multi-label),
        calibrated by the card's temperature when it has one (``fit_temperature``)."""
        texts = self._check(X)
        if not texts:
            return np.zeros((0, len(self.labels)), np.float32)
        return self._calibrated(self._proba(texts))

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Class ids (single-label) or an (N, C) 0/1 matrix (multi-label: tuned thresholds, else 0.5)."""
        if not self.multi_label:
            return proba.argmax(1)
        th = self.thresholds if self.thresholds is not None else 0.5
        return (proba >= th).astype(np.uint8)

    def predict(self, X) -> np.ndarray:
        """Labels from ``classes_``, one per text; multi-label sets: an (N, C) 0/1 matrix (scikit-learn's form)."""
        d = self.decide(self.predict_proba(X))
        return d if self.multi_label else self.classes_[d]

    def __call__(self, texts, top_k: int | None = None) -> list[list[dict]]:
        """Per text, ``[{"label", "score"}, ...]`` sorted by score, descending (all labels unless ``top_k``)."""
        proba = self.predict_proba(texts)
        labels = self.labels
        out = []
        for row in proba:
            order = np.argsort(-row)[: top_k or len(row)]
            out.append([{"label": labels[i], "score": float(row[i])} for i in order])
        return out

    def predict_labels(self, texts: list[str]) -> list[str] | list[list[str]]:
        """The decision per text as names: one label, or for multi-label sets every label over its threshold."""
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
        """int8 storage for a fine-tuned model (other kinds unchanged); it then scores as it will after a reload."""
        if self.kind == "finetune":
            self.backend.quantize()
            self.card["weight_storage"] = "int8 (per-row scales)"
        return self

    # -- persistence
    def nbytes(self) -> int:
        """Bytes of the arrays ``save`` writes to the safetensors file (for the 25 MB shipping budget)."""
        return int(sum(a.nbytes for a in self._state()[1].values()))

    def _config(self, prefix: str) -> dict:
        return {"format": FORMAT_VERSION, "kind": self.kind, "name": self.name or self.kind, "params": self.params,
                "labels": self.labels, "multi_label": self.multi_label,
                "thresholds": None if self.thresholds is None else [float(t) for t in self.thresholds],
                "card": self.card}

    def _state(self, prefix: str = "") -> tuple[dict, dict[str, np.ndarray]]:
        cfg = self._config(prefix)
        c, a = self.backend.state()
        cfg["backend"] = c
        cfg["prefix"] = prefix
        return cfg, {f"{prefix}{k}": np.ascontiguousarray(v) for k, v in a.items()}

    def _load_config(self, cfg: dict) -> None:
        self.labels, self.multi_label = list(cfg["labels"]), bool(cfg["multi_label"])
        self.thresholds = None if cfg.get("thresholds") is None else np.asarray(cfg["thresholds"])
        self.card = cfg.get("card", {})

    @classmethod
    def _from_state(cls, cfg: dict, arrays: dict[str, np.ndarray]) -> TextEmotionClassifier:
        if cfg["kind"] in TextEmotionClassifier._by_kind:  # an ensemble
            return TextEmotionClassifier._by_kind[cfg["kind"]]._from_state(cfg, arrays)
        self = TextEmotionClassifier(cfg["kind"], name=cfg.get("name") or cfg["kind"], **cfg.get("params", {}))
        self._load_config(cfg)
        self.backend.load_state(cfg["backend"], backend_arrays(cfg, arrays))
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path.json`` + ``path.safetensors`` (``path`` without suffix; a folder gets ``model.*``)."""
        return write_model_files(path, *self._state())

    @classmethod
    def load(cls, path: str | os.PathLike) -> TextEmotionClassifier:
        """Inverse of ``save``: a ``.json`` file, its stem, or a folder holding ``model.json``."""
        return TextEmotionClassifier._from_state(*read_model_files(path))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, name={self.name!r}, labels={self.labels})"
