"""``TextEnsemble``: a weighted average of text models' probabilities, itself a ``TextEmotionClassifier``.

Members that are fine-tunes sharing their frozen MiniLM layers run those layers once per batch
(``_FineTune.shared_scores``): four 3-layer fine-tunes cost 3 + 4 x 3 layer passes instead of 4 x 6.
"""
from __future__ import annotations

import time

import numpy as np

from .classifier import TextEmotionClassifier


def _member_probas(members: list[TextEmotionClassifier], texts: list[str]) -> list[np.ndarray]:
    """Each ensemble member's probabilities; fine-tunes sharing frozen layers run them once (``shared_scores``)."""
    from .backends.finetune import _FineTune

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


class TextEnsemble(TextEmotionClassifier):
    """Weighted average of member probabilities (weights tuned on validation by ``train.tune_ensemble``).

    scikit-learn parameters: ``members`` (text classifiers sharing one label set), ``weights`` (one per member;
    ``None``: equal) and ``name``. Built from fitted members with ``TextEnsemble.of`` (or
    ``TextEmotionClassifier.ensemble``); ``fit`` fits every member in place, like a scikit-learn ``Pipeline``
    fits its steps, and ``clone`` gives an unfitted copy with unfitted members.
    """

    kind = "ensemble"
    members = None  # a parameter here (the base class's read-only ``members`` is always empty)
    backend = None  # no backend of its own: the members have theirs

    def __init__(self, members: list[TextEmotionClassifier] = (), weights: list[float] | None = None,
                 name: str = "ensemble"):
        self.members = members
        self.weights = weights
        self.name = name

    @property
    def params(self) -> dict:
        """No backend hyper-parameters: those are the members'."""
        return {}

    @classmethod
    def of(cls, members: list[TextEmotionClassifier], weights: list[float] | None = None,
           name: str = "ensemble") -> TextEnsemble:
        """An ensemble of already fitted members that share a label set (weights default to equal)."""
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for m in members[1:]:
            if m.labels != members[0].labels or m.multi_label != members[0].multi_label:
                raise ValueError(f"ensemble members disagree on labels: {m.labels} vs {members[0].labels}")
        weights = list(weights) if weights is not None else [1.0 / len(members)] * len(members)
        if len(weights) != len(members):
            raise ValueError(f"{len(weights)} weights for {len(members)} ensemble members")
        self = cls(members, weights, name=name)
        self.labels, self.multi_label = list(members[0].labels), members[0].multi_label
        return self

    def _weights(self) -> list[float]:
        n = len(self.members)
        return list(self.weights) if self.weights is not None else [1.0 / n] * n

    @property
    def labels(self) -> list[str]:
        """The members' label names (``classes_`` once fitted or built with ``of``)."""
        classes = getattr(self, "classes_", None)
        if classes is not None:
            return classes.tolist()
        return list(self.members[0].labels) if self.members else []

    @labels.setter
    def labels(self, value: list[str]) -> None:
        self.classes_ = np.asarray(list(value))

    def fit(self, X, y, labels: list[str] | None = None, multi_label: bool | None = None,
            val: tuple[list[str], np.ndarray] | None = None) -> TextEnsemble:
        """Fit every member on the same data (in place), keeping the weights; arguments as in the base class."""
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        texts, y, labels, multi_label = self._targets(X, y, labels, multi_label)
        t0 = time.perf_counter()
        for m in self.members:
            m.fit(texts, y, labels, multi_label, val=val)
        self.labels, self.multi_label = labels, multi_label
        self.thresholds = None
        self.card.pop("calibration", None)
        self.card.update({"train_seconds": round(time.perf_counter() - t0, 2), "n_train": len(texts)})
        if multi_label and val is not None:
            self.tune(val[0], val[1])
        return self

    def _proba(self, texts: list[str]) -> np.ndarray:
        weights = self._weights()
        p = sum(w * pm for pm, w in zip(_member_probas(self.members, texts), weights))
        return np.asarray(p / max(sum(weights), 1e-12), np.float32)

    def quantize(self) -> TextEnsemble:
        """int8 storage for every fine-tuned member (others unchanged); they then score as they will reloaded."""
        for m in self.members:
            m.quantize()
        return self

    def _state(self, prefix: str = "") -> tuple[dict, dict[str, np.ndarray]]:
        cfg = self._config(prefix)
        cfg["weights"] = self._weights()
        cfg["members"] = []
        arrays: dict[str, np.ndarray] = {}
        for i, m in enumerate(self.members):
            c, a = m._state(f"{prefix}m{i}.")
            cfg["members"].append(c)
            arrays.update(a)
        cfg["prefix"] = prefix
        return cfg, arrays

    @classmethod
    def _from_state(cls, cfg: dict, arrays: dict[str, np.ndarray]) -> TextEnsemble:
        members = [TextEmotionClassifier._from_state(c, arrays) for c in cfg["members"]]
        self = cls(members, list(cfg["weights"]), name=cfg.get("name") or "ensemble")
        self._load_config(cfg)
        return self
