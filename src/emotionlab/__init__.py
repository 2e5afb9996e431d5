"""emotionlab: train, evaluate, explain and serve face and text emotion models, fully offline."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "FaceEmotionRecognizer"]


def __getattr__(name: str):
    # Lazy imports keep `import emotionlab` (and the CLI's --help) fast.
    if name in ("create_model", "list_models"):
        from . import models

        return getattr(models, name)
    if name == "FaceEmotionRecognizer":
        from .inference.recognizer import FaceEmotionRecognizer

        return FaceEmotionRecognizer
    raise AttributeError(name)
