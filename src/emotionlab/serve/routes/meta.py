"""``GET /`` (the demo page) and ``GET /health`` (liveness, what is loaded, limits, stuck workers)."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from ... import __version__
from ..fusion import SHARED_LABELS
from ..state import ServeState, get_state

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
router = APIRouter()


@router.get("/", include_in_schema=False)
async def index():
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/health", summary="Liveness, what is loaded, and stuck workers")
async def health(st: ServeState = Depends(get_state)):
    """``status`` is ``degraded`` while ``stuck_workers`` > 0: jobs still running after their deadline
    (each has a replacement thread, up to ``max_stuck``)."""
    return st.health(__version__, SHARED_LABELS)
