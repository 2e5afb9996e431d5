"""The one state object the routers share (``app.state.serve``) and the request helpers they have in common.

Cheap checks run on the event loop, before any work is queued: an empty body, the format sniff, the pixel
count and shape from the header (:func:`emotionlab.data.decode.probe_image`, microseconds), so that they
answer at once even when every worker is busy. Only decoding and the models run in the pool.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..data.decode import DecodeLimits, ImageRejected, probe_image
from ..inference.cancel import Cancelled
from .errors import ApiError
from .imaging import ImageInputError, decode_image, encode_png_b64
from .models import FacePool, TextModels
from .settings import ServeSettings
from .workers import WorkerPool

log = logging.getLogger("emotionlab.serve")
_BATCH_CHUNK_PIXELS = 48_000_000  # decoded pixels held at once by one batch request (~144 MB as BGR)


@dataclass
class ServeState:
    """Settings, models, the worker pool and the counters of one app."""

    settings: ServeSettings
    faces: FacePool
    texts: TextModels
    pool: WorkerPool
    started: float = field(default_factory=time.time)
    served: int = 0

    # ---------------------------------------------------------------- admission and offloading
    def busy_error(self) -> ApiError | None:
        """The 503 to answer now, or None when a new job is admitted."""
        s, p = self.settings, self.pool
        if p.pending >= s.max_pending:
            stuck = f", {p.stuck} of them stuck past their deadline" if p.stuck else ""
            return ApiError(503, "busy", f"{p.pending} requests are already queued or running (limit "
                                         f"{s.max_pending}{stuck}); retry after {s.retry_after_s} s")
        return None

    async def offload(self, fn: Callable, *args: Any) -> Any:
        """Run ``fn`` in the worker pool with admission control and a deadline; past the deadline the job is
        cancelled (or its thread counted stuck and replaced) and the request gets 504."""
        busy = self.busy_error()
        if busy is not None:
            raise busy
        s = self.settings
        job = self.pool.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job.future), s.timeout_s)
        except TimeoutError:
            self.pool.abandon(job)
            raise ApiError(504, "timeout", f"inference took longer than {s.timeout_s:g} s; the job was "
                                           "cancelled") from None
        except asyncio.CancelledError:  # the client went away: stop the work too
            self.pool.abandon(job)
            raise
        except (ApiError, ImageInputError):
            raise
        except Cancelled:
            raise ApiError(504, "timeout", "inference was cancelled") from None
        except Exception as e:  # a broken model call fails this request only
            log.error("inference failed: %s", type(e).__name__, exc_info=e)
            raise ApiError(500, "inference_failed", f"the model failed on this input ({type(e).__name__}); "
                                                    "the server log has the details") from None
        finally:
            self.served += 1

    # ---------------------------------------------------------------- images
    def limits(self) -> DecodeLimits:
        return DecodeLimits(max_pixels=int(self.settings.max_pixels),
                            max_bytes=max(int(self.settings.max_body), DecodeLimits().max_bytes))

    def probe(self, data: bytes, source: str) -> tuple[int, int]:
        """Header-only checks on the event loop: (width, height) or :class:`ImageInputError`."""
        try:
            _, w, h = probe_image(data, source, self.limits())
        except ImageRejected as e:
            raise ImageInputError(e.status, e.error, f"{source}: {e.message}") from None
        return w, h

    def detect(self, data: bytes, debug: bool, source: str) -> dict:
        """Worker side of one image: decode, then the faces (``face_json``) and the image size."""
        img = decode_image(data, self.settings.max_pixels, source)

        def call(rec):
            found = rec.predict(img)
            return rec.model_name, [face_json(f, debug) for f in found]

        model, found = self.faces.run(call)
        return {"faces": found, "model": model, "image": {"width": int(img.shape[1]), "height": int(img.shape[0])}}

    def detect_many(self, parts: list[tuple[int, str, bytes, int]], debug: bool) -> tuple[str, dict[int, dict]]:
        """Worker side of a batch: ``parts`` = (index, source, bytes, pixels) already probed. Returns the model
        name and {index: item fields}; at most ~``_BATCH_CHUNK_PIXELS`` decoded pixels are held at a time."""
        chunk = max(1, min(8, _BATCH_CHUNK_PIXELS // max([px for *_, px in parts] + [1])))

        def call(rec) -> dict[int, dict]:
            out: dict[int, dict] = {}
            if hasattr(rec, "predict_iter"):  # the real recognizer streams: decoded images held <= chunk
                items = ((src, data) for _, src, data, _ in parts)
                for r in rec.predict_iter(items, batch=chunk, limits=self.limits()):
                    idx = parts[r.index][0]
                    if r.ok:
                        out[idx] = {"image": {"width": int(r.width), "height": int(r.height)},
                                    "faces": [face_json(f, debug) for f in r.faces or ()]}
                    else:
                        out[idx] = {"error": r.error or "invalid_image", "detail": r.detail or "image refused"}
                    r.image = None
                return out
            many = getattr(rec, "predict_images", None)  # injected recognizers: decode chunk by chunk
            for start in range(0, len(parts), chunk):
                imgs = []
                for idx, src, data, _ in parts[start:start + chunk]:
                    try:
                        imgs.append((idx, decode_image(data, self.settings.max_pixels, src)))
                    except ImageInputError as e:
                        out[idx] = {"error": e.error, "detail": e.detail}
                found = many([im for _, im in imgs]) if many is not None else [rec.predict(im) for _, im in imgs]
                for (idx, im), fs in zip(imgs, found):
                    out[idx] = {"image": {"width": int(im.shape[1]), "height": int(im.shape[0])},
                                "faces": [face_json(f, debug) for f in fs]}
            return out

        return self.faces.run(lambda rec: (rec.model_name, call(rec)))

    # ---------------------------------------------------------------- texts
    def check_texts(self, items: list[str], where: str = "texts") -> None:
        s = self.settings
        if not items:
            raise ApiError(422, "validation_error", f"{where}: give at least one text")
        if len(items) > s.max_texts:
            raise ApiError(413, "too_many_texts", f"{where}: {len(items)} texts, the limit is {s.max_texts}")
        for i, t in enumerate(items):
            if not t.strip():
                raise ApiError(422, "invalid_text", f"{where}[{i}] is empty or whitespace-only")
            if len(t) > s.max_text_chars:
                raise ApiError(413, "text_too_long",
                               f"{where}[{i}] has {len(t):,} characters, the limit is {s.max_text_chars:,}")

    # ---------------------------------------------------------------- health
    def health(self, version: str, shared_labels: tuple[str, ...]) -> dict:
        s, p = self.settings, self.pool
        return {"status": "degraded" if p.stuck else "ok", "version": version,
                "face_model": self.faces.model_name or s.face_model, "face_labels": self.faces.labels,
                "attributes": list(s.attributes), "tta": self.faces.tta or s.tta,
                "text_model": s.text_model, "text_models": list(self.texts.allowed),
                "shared_labels": list(shared_labels), "workers": s.workers, "pending": p.pending,
                "stuck_workers": p.stuck, "threads": p.threads,
                "served": self.served, "uptime_s": round(time.time() - self.started, 1),
                "limits": {"max_body": s.max_body, "max_pixels": s.max_pixels, "max_texts": s.max_texts,
                           "max_text_chars": s.max_text_chars, "max_images": s.max_images,
                           "max_batch_pixels": s.max_batch_pixels, "timeout_s": s.timeout_s,
                           "max_pending": s.max_pending, "body_timeout_s": s.body_timeout_s,
                           "body_min_rate": s.body_min_rate}}


def get_state(request: Request) -> ServeState:
    """FastAPI dependency: the app's :class:`ServeState`."""
    return request.app.state.serve


def face_json(face, debug: bool = False) -> dict:
    """Face contract -> JSON; with debug, the normalized crop the model saw as base64 PNG."""
    d = face.to_dict()
    if getattr(face, "face_id", None) is not None:
        d["face_id"] = int(face.face_id)
    if debug and getattr(face, "crop", None) is not None:
        d["crop"] = encode_png_b64(face.crop)
    return d


def parse_weight(name: str, raw: str | None, default: float) -> float:
    """A fusion weight from a form field: a finite number >= 0, else 422 (the value is quoted, shortened)."""
    if raw is None or raw == "":
        return float(default)
    try:
        w = float(raw)
    except ValueError:
        raise ApiError(422, "validation_error", f"{name}: {raw[:40]!r} is not a number") from None
    if not (math.isfinite(w) and w >= 0):
        raise ApiError(422, "validation_error", f"{name}: must be a finite number >= 0, got {raw[:40]}")
    return w


async def read_upload(request: Request, max_body: int,
                      field_names: tuple[str, ...] = ("image", "file")) -> tuple[bytes | None, dict[str, str]]:
    """Image bytes from a multipart part or the raw body, plus the other form fields."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_part_size=max_body)
        try:
            upload = next((form[n] for n in field_names if isinstance(form.get(n), UploadFile)), None)
            if upload is None:
                upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            return (await upload.read() if upload is not None else None), fields
        finally:
            await form.close()  # spooled temporary files go now, not at garbage collection
    if ctype.startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        return None, {k: v for k, v in form.items() if isinstance(v, str)}
    return await request.body(), {}


async def read_uploads(request: Request, max_images: int, max_body: int) -> list[tuple[str, bytes]]:
    """Every file part of a multipart body, in order, as (file name, bytes)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "send the images as multipart/form-data file parts "
                                                     "(repeat the field 'images')")
    too_many = ApiError(413, "too_many_images", f"more than {max_images} images in one request; split the batch")
    try:
        form = await request.form(max_files=max_images, max_part_size=max_body)
    except StarletteHTTPException as e:  # the parser stops at the limit instead of reading every part
        if "too many files" in str(e.detail).lower():
            raise too_many from None
        raise
    try:
        ups = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        return [(u.filename or f"images[{i}]", await u.read()) for i, u in enumerate(ups)]
    finally:
        await form.close()
