"""Text model backends, one module each; ``BACKENDS`` maps a kind to its class.

Each backend works on class ids; ``TextEmotionClassifier`` (``..classifier``) holds the label names, checks the
inputs and saves / loads. Imports of scikit-learn, NLTK and torch happen inside the methods that need them.
"""
from __future__ import annotations

from .base import _Backend
from .embed_lr import _EmbedLR
from .embed_mlp import _EmbedMLP
from .finetune import _FineTune
from .naive_bayes import _NaiveBayes
from .tfidf_lr import _TfidfLR
from .tfidf_svm import _TfidfSVM

BACKENDS: dict[str, type[_Backend]] = {b.kind: b for b in (_NaiveBayes, _TfidfLR, _TfidfSVM, _EmbedLR, _EmbedMLP,
                                                            _FineTune)}
