"""``POST /v1/analyze``: face + text with a fused emotion distribution."""
from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, Query, Request

from ..errors import ERRORS, ApiError, clean_detail
from ..fusion import SHARED_LABELS, fuse
from ..state import ServeState, get_state, parse_weight, read_upload

router = APIRouter()

ANALYZE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "image": {"type": "string", "format": "binary"},
        "text": {"type": "string"},
        "face_weight": {"type": "number"}, "text_weight": {"type": "number"},
        "text_model": {"type": "string"}}}}}}}


def _largest(faces: list[dict]) -> int | None:
    if not faces:
        return None
    return max(range(len(faces)), key=lambda i: faces[i]["box"][2] * faces[i]["box"][3])


@router.post("/v1/analyze", summary="Face + text with a fused emotion distribution", openapi_extra=ANALYZE_BODY,
             responses=ERRORS)
async def v1_analyze(request: Request, debug: bool = Query(False), st: ServeState = Depends(get_state)):
    """Multipart with an ``image`` file and/or a ``text`` field (at least one); ``face_weight`` /
    ``text_weight`` (finite, >= 0, not both 0; only their ratio matters) override the server's fusion weights.
    The fused distribution is over FER7, built from the largest face and the text (see
    :mod:`emotionlab.serve.fusion`)."""
    t0 = time.perf_counter()
    s = st.settings
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise ApiError(415, "unsupported_media_type",
                       f"send multipart/form-data with fields image and/or text, not {ctype[:80] or 'no type'}")
    data, fields = await read_upload(request, s.max_body)
    text = fields.get("text")
    if text is not None and not text.strip():
        text = None if data is not None else text
    weights = {name: parse_weight(name, fields.get(name), default)
               for name, default in (("face_weight", s.face_weight), ("text_weight", s.text_weight))}
    if weights["face_weight"] == 0 and weights["text_weight"] == 0:
        raise ApiError(422, "validation_error", "face_weight and text_weight are both 0; at least one must be > 0")
    if data is None and text is None:
        raise ApiError(422, "validation_error", "send an image (field 'image'), a text (field 'text') or both")
    text_model_name = fields.get("text_model") or None
    if text is not None:
        st.check_texts([text], "text")
        st.texts.check_name(text_model_name)
    if data is not None:
        st.probe(data, "image")
    jobs = []
    if data is not None:
        jobs.append(st.offload(st.detect, data, debug, "image"))
    if text is not None:
        jobs.append(st.offload(st.texts.predict, text_model_name, [text]))
    results = await asyncio.gather(*jobs, return_exceptions=True)
    face_out = results[0] if data is not None else None
    text_out = results[-1] if text is not None else None
    text_error = None
    if isinstance(face_out, BaseException):
        raise face_out
    if isinstance(text_out, BaseException):
        # An unavailable / failing text model must not hide the face result: fuse the face alone and say why.
        if face_out is None or not (isinstance(text_out, ApiError) and text_out.status >= 500):
            raise text_out
        text_error, text_out = {"error": text_out.error, "detail": clean_detail(text_out.detail)}, None
    idx = _largest(face_out["faces"]) if face_out else None
    face_scores = face_out["faces"][idx]["scores"] if idx is not None else None
    text_preds = text_out["predictions"][0] if text_out else None
    try:
        fused = fuse(face_scores, text_preds, weights["face_weight"], weights["text_weight"])
    except ValueError as e:
        fused = {"label": None, "scores": None, "labels": list(SHARED_LABELS), "error": clean_detail(e)}
    fused["face_index"] = idx
    return {
        "faces": face_out["faces"] if face_out else [],
        "face_model": face_out["model"] if face_out else None,
        "image": face_out["image"] if face_out else None,
        "text": text_error if text_out is None and text_error else None if text_out is None else {
            "text": text, "model": text_out["model"], "multi_label": text_out["multi_label"],
            "predictions": text_preds},
        "fused": fused,
        "took_ms": round((time.perf_counter() - t0) * 1000, 2),
    }
