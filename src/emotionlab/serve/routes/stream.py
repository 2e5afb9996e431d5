"""``WS /v1/stream``: live frames in, faces with stable ids (and optionally smoothed scores) out.

Browsers let any page open a WebSocket to any host, so the ``Origin`` header is checked: the page's own origin
(the ``Host`` the client connected to) is allowed, others only when listed in ``allow_origins`` (``*`` = any).
A client that sends no ``Origin`` is not a browser page and is allowed. Refusals and bad parameters are
answered after ``accept`` with a JSON error and close code 1008 with a reason, so the client can see why.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.datastructures import Headers

from ...inference.tracking import FaceTracker
from ..errors import ApiError, clean_detail
from ..imaging import ImageInputError
from ..settings import normalize_origin
from ..state import ServeState
from .faces import relabel

router = APIRouter()
POLICY_VIOLATION = 1008
_TRUE, _FALSE = {"1", "true", "t", "yes", "y", "on"}, {"0", "false", "f", "no", "n", "off"}  # as FastAPI's bool


def origin_refusal(headers: Headers, allow: tuple[str, ...]) -> str | None:
    """Why this handshake's ``Origin`` is refused, or None when it is allowed."""
    origin = headers.get("origin")
    if origin is None or "*" in allow:
        return None
    try:
        norm = normalize_origin(origin)
    except ValueError:
        return f"origin {origin[:80]!r} is not a valid origin"
    if norm in allow:
        return None
    host = (headers.get("host") or "").strip().lower()
    if norm != "null" and host:
        scheme, _, netloc = norm.partition("://")
        default = {"http": ":80", "https": ":443"}.get(scheme, "")
        if netloc == host or netloc == host.removesuffix(default):
            return None
    return (f"origin {origin[:80]} may not open this stream (allowed: this server's own page"
            + (f", {', '.join(allow)}" if allow else "") + "; see --allow-origin)")


def parse_bool(name: str, value: Any) -> bool:
    """A JSON control boolean: only true / false (a string such as "false" is refused, not truthy)."""
    if isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be true or false, got {json.dumps(value)[:40]}")


def parse_bool_param(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    v = raw.strip().lower()
    if v in _TRUE or v in _FALSE:
        return v in _TRUE
    raise ValueError(f"query parameter {name} must be a boolean (true/false/1/0), got {raw[:40]!r}")


def parse_smoothing(value: Any, where: str = "smoothing") -> float:
    """A finite number in [0, 1): JSON numbers only (no strings, no booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number in [0, 1), got {json.dumps(value)[:40]}")
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v < 1.0):
        raise ValueError(f"{where} must be a number in [0, 1), got {value}")
    return v


def _float_param(name: str, raw: str | None, default: float) -> float:
    if raw is None:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"query parameter {name} must be a number in [0, 1), got {raw[:40]!r}") from None
    return parse_smoothing(v, f"query parameter {name}")


async def _refuse(ws: WebSocket, error: str, detail: str) -> None:
    await ws.send_json({"error": error, "detail": clean_detail(detail)})
    reason = clean_detail(detail).encode()[:120].decode(errors="ignore")  # a close reason holds 123 bytes
    await ws.close(code=POLICY_VIOLATION, reason=reason)


@router.websocket("/v1/stream")
async def v1_stream(ws: WebSocket):
    """Binary messages are frames (JPEG/PNG/WebP); text messages are JSON controls ``{"debug": bool,
    "smoothing": number, "min_confidence": number}``. Query: ``debug`` (bool), ``smoothing`` and
    ``min_confidence`` (0 <= x < 1; min_confidence: label ``uncertain`` below it, default the server's). Each frame is answered with
    ``{"frame", "faces", "model", "image", "took_ms"}`` or, for a bad frame, ``{"frame", "error", "detail"}``;
    the connection stays open either way."""
    st: ServeState = ws.app.state.serve
    s = st.settings
    await ws.accept()
    refusal = origin_refusal(ws.headers, s.allow_origins)
    if refusal is not None:
        await _refuse(ws, "forbidden_origin", refusal)
        return
    try:
        debug = parse_bool_param("debug", ws.query_params.get("debug"), False)
        tracker = FaceTracker(smoothing=_float_param("smoothing", ws.query_params.get("smoothing"), 0.0),
                              first_id=1)
        raw_min = ws.query_params.get("min_confidence")
        min_conf = None if raw_min is None else _float_param("min_confidence", raw_min, 0.0)
    except ValueError as e:
        await _refuse(ws, "validation_error", str(e))
        return
    n = 0
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            if msg.get("text") is not None:
                try:
                    ctl = json.loads(msg["text"])
                    if not isinstance(ctl, dict):
                        raise ValueError("expected a JSON object such as {\"debug\": true}")
                    unknown = sorted(set(ctl) - {"debug", "smoothing", "min_confidence"})
                    if unknown:
                        raise ValueError(f"unknown key(s) {', '.join(k[:20] for k in unknown[:5])}; "
                                         "expected debug, smoothing, min_confidence")
                    new_debug = parse_bool("debug", ctl["debug"]) if "debug" in ctl else debug
                    new_smoothing = (parse_smoothing(ctl["smoothing"]) if "smoothing" in ctl
                                     else tracker.smoothing)
                    new_min = (parse_smoothing(ctl["min_confidence"], "min_confidence")
                               if "min_confidence" in ctl else min_conf)
                except ValueError as e:  # json.JSONDecodeError is a ValueError
                    await ws.send_json({"error": "invalid_control", "detail": clean_detail(f"control message: {e}")})
                    continue
                debug, tracker.smoothing, min_conf = new_debug, new_smoothing, new_min
                await ws.send_json({"ok": True, "debug": debug, "smoothing": tracker.smoothing,
                                    "min_confidence": min_conf})
                continue
            data = msg.get("bytes") or b""
            n += 1
            t0 = time.perf_counter()
            if len(data) > s.max_body:
                await ws.send_json({"frame": n, "error": "payload_too_large",
                                    "detail": f"frame of {len(data):,} bytes is over the limit of {s.max_body:,}"})
                continue
            try:
                st.probe(data, f"frame {n}")
                out = await st.offload(st.detect, data, debug, f"frame {n}")
            except (ApiError, ImageInputError) as e:
                await ws.send_json({"frame": n, "error": e.error, "detail": clean_detail(e.detail)})
                continue
            tracker.update(out["faces"])
            relabel(out["faces"], min_conf)  # after smoothing: the label follows the scores shown
            out.update(frame=n, took_ms=round((time.perf_counter() - t0) * 1000, 2))
            await ws.send_json(out)
    except WebSocketDisconnect:
        pass
