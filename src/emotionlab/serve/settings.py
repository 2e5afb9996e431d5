"""The service's settings: one frozen dataclass, filled by the CLI flags or ``EMOTIONLAB_SERVE_*`` variables."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

SHIPPED_TEXT_MODELS = ("default", "tweeteval", "carer", "goemotions", "crowdflower")


def normalize_origin(origin: str) -> str:
    """``Scheme://Host:Port/`` -> ``scheme://host[:port]`` with the scheme's default port dropped, so that an
    allow-list entry and a browser's ``Origin`` header compare equal; ``*`` and ``null`` stay as they are."""
    o = origin.strip().lower().rstrip("/")
    if o in ("*", "null"):
        return o
    parts = urlsplit(o)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise ValueError(f"origin {origin.strip()[:80]!r} is not scheme://host[:port] (or * / null)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"origin {origin.strip()[:80]!r} has an invalid port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


@dataclass(frozen=True)
class ServeSettings:
    """Every knob of the service; the CLI flags map onto these one to one."""

    face_model: str = "default"
    text_model: str = "default"
    detector: str = "auto"
    backend: str = "auto"
    device: str = "cpu"
    max_body: int = 10 * 1024 * 1024  # bytes
    max_pixels: int = 40_000_000  # width x height of one image
    max_batch_pixels: int = 256_000_000  # decoded pixels of all images of one /v1/faces/batch request together
    workers: int = 2
    timeout_s: float = 30.0
    max_pending: int = 64  # jobs queued, running or stuck; more -> 503 + Retry-After before the body is read
    max_stuck: int = 8  # workers past their deadline that get a replacement thread; beyond, capacity shrinks
    retry_after_s: int = 2  # the Retry-After of every 503
    max_connections: int = 256  # uvicorn limit_concurrency: more open connections / tasks -> 503
    keep_alive_s: int = 5  # uvicorn timeout_keep_alive: an idle keep-alive connection is closed after this
    body_timeout_s: float = 10.0  # the body must be done within this + 1 s per body_min_rate bytes, no chunk
                                  # later than this after the last one; else 408 and close
    body_min_rate: int = 65536  # bytes/s a body must keep up on average (a slow-body client is closed)
    header_timeout_s: float = 10.0  # the request head must be complete this long after connecting, else close
    allow_origins: tuple[str, ...] = ()  # WebSocket origins besides the page's own ("*" = any)
    face_weight: float = 0.5
    text_weight: float = 0.5
    max_texts: int = 64
    max_images: int = 32  # file parts of one /v1/faces/batch request (the body limit still holds for all of them)
    max_text_chars: int = 5000
    text_models: tuple[str, ...] = SHIPPED_TEXT_MODELS
    preload: bool = False
    torch_threads: int | None = None
    attributes: tuple[str, ...] = ("emotion",)  # ("emotion", "gender") adds apparent gender: opt-in at start
    min_confidence: float = 0.0  # faces whose top calibrated score is below this are labelled "uncertain"
    tta: str = "none"  # test-time augmentation of the face classifier (none | flip | ten): chosen at start, the
                       # cost (2x / 10x classification) is the operator's choice, not each client's

    def __post_init__(self) -> None:
        from ..inference.recognizer import TTA_MODES, parse_attributes

        object.__setattr__(self, "attributes", parse_attributes(self.attributes))  # frozen dataclass
        if self.tta not in TTA_MODES:
            raise ValueError(f"serve setting tta must be one of {', '.join(TTA_MODES)}, got {self.tta!r}")
        for name in ("max_body", "max_pixels", "max_batch_pixels", "workers", "max_pending", "max_texts",
                     "max_text_chars", "max_images", "retry_after_s", "max_connections", "keep_alive_s", "body_min_rate"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"serve setting {name} must be >= 1, got {getattr(self, name)}")
        if int(self.max_stuck) < 0:
            raise ValueError(f"serve setting max_stuck must be >= 0, got {self.max_stuck}")
        for name in ("timeout_s", "body_timeout_s", "header_timeout_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"serve setting {name} must be a finite number of seconds > 0, got {v}")
        if not (isinstance(self.min_confidence, (int, float)) and 0.0 <= self.min_confidence < 1.0):
            raise ValueError(f"serve setting min_confidence must be a number in [0, 1), got {self.min_confidence}")
        for name in ("face_weight", "text_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"fusion weights must be finite numbers >= 0, got {name} {v}")
        if self.face_weight == 0 and self.text_weight == 0:
            raise ValueError(f"fusion weights must be >= 0 and not both 0, got face {self.face_weight}, "
                             f"text {self.text_weight}")
        origins = (self.allow_origins,) if isinstance(self.allow_origins, str) else tuple(self.allow_origins)
        object.__setattr__(self, "allow_origins", tuple(dict.fromkeys(normalize_origin(o) for o in origins)))


def settings_from_env(**kw: Any) -> ServeSettings:
    """Settings from ``EMOTIONLAB_SERVE_*`` environment variables (for ``uvicorn --factory``), then ``kw``."""
    base = ServeSettings()
    vals: dict[str, Any] = {}
    for f in base.__dataclass_fields__.values():
        raw = os.environ.get(f"EMOTIONLAB_SERVE_{f.name.upper()}")
        if raw is None:
            continue
        cur = getattr(base, f.name)
        if isinstance(cur, bool):
            vals[f.name] = raw.lower() in ("1", "true", "yes", "on")
        elif isinstance(cur, tuple):
            vals[f.name] = tuple(x for x in raw.split(",") if x)
        elif f.name == "torch_threads":
            vals[f.name] = int(raw)
        else:
            vals[f.name] = type(cur)(raw)
    vals.update(kw)
    return replace(base, **vals)
