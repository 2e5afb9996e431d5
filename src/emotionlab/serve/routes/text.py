"""``POST /v1/text``: emotions in short texts."""
from __future__ import annotations

import time

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ..errors import ERRORS
from ..state import ServeState, get_state

router = APIRouter()


class TextRequest(BaseModel):
    texts: list[str] = Field(..., description="Texts to classify (1..max_texts, none empty).",
                             examples=[["I can't believe we won!", "This is so unfair."]])
    model: str | None = Field(None, description="Text model name; omitted = the server's default.")


@router.post("/v1/text", summary="Emotions in short texts", responses=ERRORS)
async def v1_text(req: TextRequest, st: ServeState = Depends(get_state)):
    t0 = time.perf_counter()
    st.check_texts(req.texts)
    st.texts.check_name(req.model)
    out = await st.offload(st.texts.predict, req.model, req.texts)
    out["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    return out
