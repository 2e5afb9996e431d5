"""One APIRouter per resource, all over the app's :class:`~emotionlab.serve.state.ServeState`."""
from __future__ import annotations

from . import analyze, faces, meta, stream, text

ROUTERS = (meta.router, faces.router, text.router, analyze.router, stream.router)

__all__ = ["ROUTERS"]
