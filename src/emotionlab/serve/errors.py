"""The one error shape of the service, ``{"error": short_name, "detail": sentence}``, and its OpenAPI model.

Error texts go to untrusted clients: :func:`clean_detail` removes object reprs (``<... at 0x7f...>``) that a
library message may carry, and every 503 carries ``Retry-After``.
"""
from __future__ import annotations

import re
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

STATUS_NAMES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
                408: "timeout", 413: "payload_too_large", 415: "unsupported_media_type",
                422: "validation_error", 429: "too_many_requests", 500: "internal_error", 503: "busy",
                504: "timeout"}
RETRY_AFTER_S = 2  # the app sets its own from ServeSettings.retry_after_s; this covers errors raised outside it
_REPR = re.compile(r"<([A-Za-z_][\w.]*)(?: object)? at 0x[0-9a-fA-F]+>")
_ADDR = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")


class ApiError(Exception):
    """An error answered as JSON ``{"error", "detail"}`` with ``status``."""

    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def clean_detail(text: object, limit: int = 1000) -> str:
    """A client-safe sentence: object reprs become their type name, memory addresses go, length is capped."""
    s = _ADDR.sub("[address]", _REPR.sub(lambda m: f"<{m.group(1).rsplit('.', 1)[-1]}>", str(text)))
    return s if len(s) <= limit else s[:limit - 1] + "…"


def err(status: int, error: str, detail: object, retry_after: int | None = None,
        headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error response; a 503 always says when to retry."""
    h = dict(headers or {})
    if status == 503:
        h.setdefault("Retry-After", str(int(retry_after or RETRY_AFTER_S)))
    return JSONResponse({"error": error, "detail": clean_detail(detail)}, status_code=status, headers=h or None)


class ErrorBody(BaseModel):
    """Every error answer: a short machine-readable name and a sentence that says what was expected."""

    error: str = Field(..., examples=["unsupported_media_type"])
    detail: str = Field(..., examples=[("image: not a supported image (first bytes 25 50 44 46); expected one of "
                                        "jpeg, png, webp, bmp, gif, tiff")])


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": desc} for code, desc in (
        (400, "Empty or malformed body"), (404, "Unknown model or route"),
        (408, "The request body arrived too slowly"),
        (413, "Body, image pixels or texts over the limits"), (415, "Not an image (sniffed) / wrong body type"),
        (422, "Invalid image, text or fields"), (500, "The model failed on this request"),
        (503, "Busy or model unavailable (see Retry-After)"), (504, "Inference timed out"))}
