"""Text emotion classification: dataset readers, tweet normalization, models and shipped defaults.

    from emotionlab.text import load_text_model
    clf = load_text_model("default")
    clf.predict(["I can't believe it!"])  # [[{"label": ..., "score": ...}, ...]]
"""
from __future__ import annotations

from .hub import load_text_model, shipped_text_models
from .models import KINDS, TextEmotionClassifier

__all__ = ["KINDS", "TextEmotionClassifier", "load_text_model", "shipped_text_models"]
