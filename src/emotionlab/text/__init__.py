"""Text emotion classification: dataset readers, tweet normalization, models and shipped defaults.

    from emotionlab.text import load_text_model
    clf = load_text_model("default")
    clf(["I can't believe it!"])          # [[{"label": ..., "score": ...}, ...]]
    clf.predict(["I can't believe it!"])  # array(['surprise'], ...): scikit-learn's predict
"""
from __future__ import annotations

from .classifier import TextEmotionClassifier
from .ensemble import TextEnsemble
from .hub import load_text_model, shipped_text_models
from .store import KINDS

__all__ = ["KINDS", "TextEmotionClassifier", "TextEnsemble", "load_text_model", "shipped_text_models"]
