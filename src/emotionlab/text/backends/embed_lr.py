"""``embed_lr``: MiniLM sentence embeddings + logistic regression."""
from __future__ import annotations

from .base import _Backend, _Linear


class _EmbedLR(_Backend):
    """MiniLM sentence embeddings + logistic regression."""

    kind = "embed_lr"

    def __init__(self, C: float = 2.0, class_weight: str | None = None, **params):
        super().__init__(C=C, class_weight=class_weight, **params)

    def fit(self, texts, y, n_classes, multi_label, val=None, x=None):
        from ..embed import embed_texts

        x = embed_texts(texts) if x is None else x
        self.head = _Linear(self.params["C"], self.params["class_weight"], max_iter=3000).fit(x, y, n_classes,
                                                                                          multi_label)
        return self

    def scores(self, texts):
        from ..embed import embed_texts

        return self.head.proba(embed_texts(texts))

    def state(self):
        return {"multi_label": self.head.multi_label}, {"coef": self.head.coef, "intercept": self.head.intercept}

    def load_state(self, cfg, arrays):
        self.head = _Linear(self.params["C"])
        self.head.multi_label = cfg["multi_label"]
        self.head.coef, self.head.intercept = arrays["coef"], arrays["intercept"]
