"""``POST /v1/faces`` and ``POST /v1/faces/batch``: faces and their emotions in images."""
from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request

from ...inference.recognizer import label_of
from ..errors import ERRORS, ApiError, clean_detail
from ..imaging import ImageInputError
from ..state import ServeState, get_state, read_upload, read_uploads

router = APIRouter()
MIN_CONF_DOC = ("Label a face 'uncertain' when its top calibrated score is below this (default: the server's "
                "--min-confidence)")


def relabel(faces: list[dict], min_confidence: float | None) -> None:
    """Apply a request's ``min_confidence`` to face dicts (their scores are kept as they are)."""
    if min_confidence is None:
        return
    for f in faces:
        if f.get("scores"):
            f["label"] = label_of(f["scores"], min_confidence)

IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "image": {"type": "string", "format": "binary"}}, "required": ["image"]}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
BATCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


@router.post("/v1/faces", summary="Faces and their emotions in one image", openapi_extra=IMAGE_BODY,
             responses=ERRORS)
async def v1_faces(request: Request, debug: bool = Query(False, description="Include the model's crop (PNG)"),
                   min_confidence: float | None = Query(None, ge=0.0, lt=1.0, description=MIN_CONF_DOC),
                   st: ServeState = Depends(get_state)):
    """Send the image as multipart field ``image`` or as the raw body (any declared type; it is sniffed)."""
    t0 = time.perf_counter()
    data, _ = await read_upload(request, st.settings.max_body)
    if data is None:
        raise ApiError(422, "missing_image", "multipart body has no file part; send the image as field 'image'")
    st.probe(data, "image")  # empty / not an image / too many pixels: answered now, not after the queue
    out = await st.offload(st.detect, data, debug, "image")
    relabel(out.get("faces", []), min_confidence)
    out["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    return out


@router.post("/v1/faces/batch", summary="Faces and their emotions in several images", openapi_extra=BATCH_BODY,
             responses=ERRORS)
async def v1_faces_batch(request: Request, debug: bool = Query(False, description="Include the crops (PNG)"),
                         min_confidence: float | None = Query(None, ge=0.0, lt=1.0, description=MIN_CONF_DOC),
                         st: ServeState = Depends(get_state)):
    """Send the images as repeated multipart file parts (field ``images``). A bad image is an error item
    (``{index, filename, error, detail}``) and the others are still answered; results keep the order sent.
    The images of one request may hold at most ``max_batch_pixels`` decoded pixels together: those past the
    budget are error items ``batch_too_large``."""
    t0 = time.perf_counter()
    s = st.settings
    parts = await read_uploads(request, s.max_images, s.max_body)
    if not parts:
        raise ApiError(422, "missing_image", "multipart body has no file part; send the images as field 'images'")
    items: list[dict] = []
    good: list[tuple[int, str, bytes, int]] = []
    budget = s.max_batch_pixels
    for i, (name, data) in enumerate(parts):
        item: dict = {"index": i, "filename": name}
        items.append(item)
        source = f"images[{i}] ({name})"
        try:
            w, h = st.probe(data, source)
        except ImageInputError as e:
            item.update(error=e.error, detail=e.detail)
            continue
        if w * h > budget:
            item.update(error="batch_too_large",
                        detail=f"{source}: {w}x{h} pixels do not fit in what is left of this request's budget "
                               f"of {s.max_batch_pixels:,} decoded pixels; send it in another request")
            continue
        budget -= w * h
        good.append((i, source, data, w * h))
    model = st.faces.model_name or s.face_model
    if good:
        model, found = await st.offload(st.detect_many, good, debug)
        for idx, fields in found.items():
            items[idx].update(fields)
    for it in items:
        relabel(it.get("faces", []), min_confidence)
        if "detail" in it:  # item errors go to the client as they are: no object reprs
            it["detail"] = clean_detail(it["detail"])
    out = {"results": items, "model": model, "n_images": len(items),
           "n_faces": sum(len(it.get("faces", ())) for it in items),
           "n_errors": sum("error" in it for it in items)}
    out["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    return out
