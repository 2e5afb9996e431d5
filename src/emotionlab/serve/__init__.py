"""The web service and browser demo: ``emotionlab serve`` (FastAPI app from :func:`create_app`)."""
from __future__ import annotations

from .app import ServeSettings, create_app
from .fusion import SHARED_LABELS, fuse

__all__ = ["SHARED_LABELS", "ServeSettings", "create_app", "fuse"]
