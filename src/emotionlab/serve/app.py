"""The FastAPI service: face, text and fused emotion endpoints, a live WebSocket stream and the demo page.

Design choices that matter in production:

* **Limits first.** A body larger than ``max_body`` is refused (413) before it is read; images are sniffed by
  magic bytes (415 for anything else, whatever the declared type) and their pixel count is checked from the
  header before decoding (413), see :mod:`emotionlab.serve.imaging`. Every error is JSON
  ``{"error": short_name, "detail": human sentence}`` with a 4xx code (5xx only for server-side failures).
* **Inference off the event loop.** Decoding and model calls run in a bounded thread pool (``workers``
  threads). The face models come from a pool of one recognizer per worker, so concurrent requests never share
  a detector; a request waits at most ``timeout_s`` (504), and when more than ``max_pending`` requests are
  queued new ones get 503 at once instead of piling up. A request that fails only fails itself.
* **Injectable models.** ``create_app(face_recognizer=..., text_model=...)`` takes ready objects (tests, other
  embedders); by default the shipped models load lazily on first use (or at start with ``preload``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .fusion import SHARED_LABELS, fuse
from .imaging import ImageInputError, decode_image, encode_png_b64

log = logging.getLogger("emotionlab.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"
SHIPPED_TEXT_MODELS = ("default", "tweeteval", "carer", "goemotions", "crowdflower")


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
    workers: int = 2
    timeout_s: float = 30.0
    max_pending: int = 64
    face_weight: float = 0.5
    text_weight: float = 0.5
    max_texts: int = 64
    max_images: int = 32  # file parts of one /v1/faces/batch request (the body limit still holds for all of them)
    max_text_chars: int = 5000
    text_models: tuple[str, ...] = SHIPPED_TEXT_MODELS
    preload: bool = False
    torch_threads: int | None = None
    attributes: tuple[str, ...] = ("emotion",)  # ("emotion", "gender") adds apparent gender: opt-in at start
    tta: str = "none"  # test-time augmentation of the face classifier (none | flip | ten): chosen at start, the
                       # cost (2x / 10x classification) is the operator's choice, not each client's

    def __post_init__(self) -> None:
        from ..inference.recognizer import TTA_MODES, parse_attributes

        object.__setattr__(self, "attributes", parse_attributes(self.attributes))  # frozen dataclass
        if self.tta not in TTA_MODES:
            raise ValueError(f"serve setting tta must be one of {', '.join(TTA_MODES)}, got {self.tta!r}")
        for name in ("max_body", "max_pixels", "workers", "max_pending", "max_texts", "max_text_chars",
                     "max_images"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"serve setting {name} must be >= 1, got {getattr(self, name)}")
        if not self.timeout_s > 0:
            raise ValueError(f"serve setting timeout_s must be > 0, got {self.timeout_s}")
        if self.face_weight < 0 or self.text_weight < 0 or self.face_weight + self.text_weight <= 0:
            raise ValueError(f"fusion weights must be >= 0 and not both 0, got face {self.face_weight}, "
                             f"text {self.text_weight}")


class ApiError(Exception):
    """An error answered as JSON ``{"error", "detail"}`` with ``status``."""

    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


_STATUS_NAMES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
                 408: "timeout", 413: "payload_too_large", 415: "unsupported_media_type",
                 422: "validation_error", 429: "too_many_requests", 500: "internal_error", 503: "busy",
                 504: "timeout"}


def _err(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_body`` bytes with 413, by header or while streaming (chunked)."""

    def __init__(self, app, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_body
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    return await _err(400, "bad_request", f"Content-Length {v!r} is not a number")(scope, receive, send)
                if n > limit:
                    return await _err(413, "payload_too_large",
                                      f"request body of {n:,} bytes is over the limit of {limit:,}")(scope, receive, send)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge(seen, limit)
            return msg

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge as e:
            if started:
                raise
            await _err(413, "payload_too_large", str(e.detail))(scope, receive, send)


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` so that FastAPI's body parsing passes it on as a 413 (not a 400)."""

    def __init__(self, seen: int, limit: int):
        super().__init__(413, f"request body of more than {seen:,} bytes is over the limit of {limit:,}")
        self.seen = seen


class FacePool:
    """One face recognizer per worker thread (created lazily, or all at start with preload).

    An injected ``instance`` is shared by every worker instead, so it must be thread-safe.
    """

    def __init__(self, size: int, factory: Callable[[], Any] | None = None, instance: Any = None):
        self.factory, self.instance = factory, instance
        self._q: queue.Queue = queue.Queue()
        for _ in range(size):
            self._q.put(instance)
        self.model_name: str | None = getattr(instance, "model_name", None)
        self.labels: list[str] | None = list(instance.labels) if instance is not None else None
        self.tta: str | None = getattr(instance, "tta", None)  # what the loaded recognizers really do

    def _make(self):
        if self.factory is None:
            raise ApiError(503, "model_unavailable", "no face recognizer configured")
        try:
            rec = self.factory()
        except (FileNotFoundError, ImportError, ValueError, KeyError) as e:
            raise ApiError(503, "model_unavailable", f"face model could not be loaded: {e}") from e
        self.model_name, self.labels, self.tta = rec.model_name, list(rec.labels), getattr(rec, "tta", None)
        return rec

    def run(self, fn: Callable[[Any], Any]):
        """Borrow a recognizer for the duration of ``fn(recognizer)`` (blocks only if all are busy)."""
        rec = self._q.get()
        try:
            if rec is None:
                rec = self._make()
            return fn(rec)
        finally:
            self._q.put(rec)

    def preload(self) -> None:
        got = [self._q.get() for _ in range(self._q.qsize())]
        try:
            got = [r if r is not None else self._make() for r in got]
        finally:
            for r in got:
                self._q.put(r)


class TextModels:
    """Named text models, loaded once on demand; calls to one model are serialized (tokenizers are not
    thread-safe), different models run in parallel."""

    def __init__(self, settings: ServeSettings, instance: Any = None, loader: Callable[[str], Any] | None = None):
        self.settings = settings
        self.allowed = tuple(dict.fromkeys((settings.text_model, *settings.text_models)))
        self._loader = loader
        self._models: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._load_lock = threading.Lock()
        if instance is not None:
            self._models["default"] = instance
            self._models[settings.text_model] = instance
            name = getattr(instance, "name", None)
            if isinstance(name, str):
                self._models[name] = instance
                self.allowed = tuple(dict.fromkeys((*self.allowed, name)))

    def check_name(self, name: str | None) -> str:
        key = name or "default"
        if key not in self.allowed:
            raise ApiError(404, "unknown_model", f"text model {key!r} is not served here; available: "
                                                 f"{', '.join(self.allowed)}")
        return key

    def get(self, name: str | None):
        key = self.check_name(name)
        with self._load_lock:
            if key not in self._models:
                target = self.settings.text_model if key == "default" else key
                loader = self._loader
                if loader is None:
                    try:
                        from ..text import load_text_model as loader
                    except ImportError as e:
                        raise ApiError(503, "model_unavailable", f"text models are not installed: {e}") from e
                try:
                    self._models[key] = loader(target)
                except (FileNotFoundError, ImportError, ValueError, KeyError, OSError) as e:
                    raise ApiError(503, "model_unavailable", f"text model {target!r} could not be loaded: {e}") from e
            model = self._models[key]
            lock = self._locks.setdefault(id(model), threading.Lock())
        return model, lock

    def predict(self, name: str | None, texts: list[str]) -> dict:
        model, lock = self.get(name)
        with lock:
            try:
                preds = model.predict(texts)
            except ValueError as e:
                raise ApiError(422, "invalid_text", str(e)) from e
        return {"model": getattr(model, "name", name or "default"), "labels": list(model.labels),
                "multi_label": bool(getattr(model, "multi_label", False)),
                "predictions": [[{"label": str(p["label"]), "score": float(p["score"])} for p in ps] for ps in preds]}


class ErrorBody(BaseModel):
    """Every error answer: a short machine-readable name and a sentence that says what was expected."""

    error: str = Field(..., examples=["unsupported_media_type"])
    detail: str = Field(..., examples=[("image: not a supported image (first bytes 25 50 44 46); expected one of "
                                        "jpeg, png, webp, bmp, gif, tiff")])


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": desc} for code, desc in (
        (400, "Empty or malformed body"), (404, "Unknown model or route"),
        (413, "Body, image pixels or texts over the limits"), (415, "Not an image (sniffed) / wrong body type"),
        (422, "Invalid image, text or fields"), (500, "The model failed on this request"),
        (503, "Busy or model unavailable"), (504, "Inference timed out"))}


class TextRequest(BaseModel):
    texts: list[str] = Field(..., description="Texts to classify (1..max_texts, none empty).",
                             examples=[["I can't believe we won!", "This is so unfair."]])
    model: str | None = Field(None, description="Text model name; omitted = the server's default.")


_IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "image": {"type": "string", "format": "binary"}}, "required": ["image"]}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
_BATCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}
_ANALYZE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "image": {"type": "string", "format": "binary"},
        "text": {"type": "string"},
        "face_weight": {"type": "number"}, "text_weight": {"type": "number"},
        "text_model": {"type": "string"}}}}}}}


def face_json(face, debug: bool = False) -> dict:
    """Face contract -> JSON; with debug, the normalized crop the model saw as base64 PNG."""
    d = face.to_dict()
    if getattr(face, "face_id", None) is not None:
        d["face_id"] = int(face.face_id)
    if debug and getattr(face, "crop", None) is not None:
        d["crop"] = encode_png_b64(face.crop)
    return d


def _largest(faces: list[dict]) -> int | None:
    if not faces:
        return None
    return max(range(len(faces)), key=lambda i: faces[i]["box"][2] * faces[i]["box"][3])


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


class StreamSmoother:
    """Per-connection face tracking by box overlap and exponential smoothing of the scores over frames.

    ``smoothing`` in [0, 1): weight of the previous frame's scores (0 = no smoothing). Stable ids let the page
    keep a face's label from flickering.
    """

    def __init__(self, smoothing: float = 0.0, min_iou: float = 0.3):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.a, self.min_iou = smoothing, min_iou
        self.tracks: list[dict] = []
        self.next_id = 1

    def update(self, faces: list[dict]) -> list[dict]:
        free = list(self.tracks)
        new_tracks = []
        for f in faces:
            best = max(free, key=lambda t: _iou(t["box"], f["box"]), default=None)
            if best is not None and _iou(best["box"], f["box"]) >= self.min_iou:
                free.remove(best)
                fid = best["id"]
                if self.a > 0 and set(best["scores"]) == set(f["scores"]):
                    f["scores"] = {k: self.a * best["scores"][k] + (1 - self.a) * v for k, v in f["scores"].items()}
                    f["label"] = max(f["scores"], key=f["scores"].get)
            else:
                fid, self.next_id = self.next_id, self.next_id + 1
            f["face_id"] = fid
            new_tracks.append({"id": fid, "box": f["box"], "scores": f["scores"]})
        self.tracks = new_tracks
        return faces


def create_app(face_recognizer: Any = None, text_model: Any = None, settings: ServeSettings | None = None, *,
               face_factory: Callable[[], Any] | None = None,
               text_loader: Callable[[str], Any] | None = None, **overrides: Any) -> FastAPI:
    """Build the service. ``face_recognizer`` / ``text_model`` follow the project contracts; None = the shipped
    models, loaded lazily. ``overrides`` replace fields of ``settings`` (e.g. ``max_body=1024``)."""
    s = replace(settings or ServeSettings(), **overrides)
    if face_recognizer is None and face_factory is None:
        def face_factory():
            from ..inference import FaceEmotionRecognizer

            return FaceEmotionRecognizer(model=s.face_model, detector=s.detector, device=s.device, backend=s.backend,
                                         attributes=s.attributes, tta=s.tta)

    faces = FacePool(s.workers, factory=face_factory, instance=face_recognizer)
    texts = TextModels(s, instance=text_model, loader=text_loader)
    state: dict[str, Any] = {"pending": 0, "started": time.time(), "served": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if s.torch_threads:
            import torch

            torch.set_num_threads(int(s.torch_threads))
        pool = ThreadPoolExecutor(max_workers=s.workers, thread_name_prefix="emotionlab-infer")
        app.state.pool = pool
        try:
            if s.preload:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(pool, faces.preload)  # no face model = no service: fail fast
                try:  # one prediction, so that lazily loaded parts (the sentence encoder) load now too
                    await loop.run_in_executor(pool, texts.predict, None, ["preload"])
                except ApiError as e:  # the face API is still useful; text routes answer 503 with this reason
                    log.warning("text model not loaded: %s", e.detail)
            yield
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="emotionlab", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Face and text emotion recognition, fully offline. Errors are JSON "
                              "`{\"error\", \"detail\"}`. Fused results use the FER7 label space "
                              f"({', '.join(SHARED_LABELS)}). Live video: `WS /v1/stream` takes binary JPEG/PNG "
                              "frames and answers each with `{frame, faces, model, image, took_ms}` (or "
                              "`{frame, error, detail}`); JSON text messages `{debug, smoothing}` change settings. "
                              "The demo page is at `/`.")
    app.state.settings, app.state.faces, app.state.texts = s, faces, texts
    app.add_middleware(BodyLimitMiddleware, max_body=s.max_body)

    async def offload(fn: Callable, *args):
        """Run ``fn`` in the worker pool with admission control and a deadline."""
        if state["pending"] >= s.max_pending:
            raise ApiError(503, "busy", f"{state['pending']} requests are already queued (limit {s.max_pending}); "
                                        "retry shortly")
        state["pending"] += 1
        try:
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(app.state.pool, fn, *args)
            try:
                return await asyncio.wait_for(fut, s.timeout_s)
            except TimeoutError:
                raise ApiError(504, "timeout", f"inference took longer than {s.timeout_s:g} s") from None
        except (ApiError, ImageInputError):
            raise
        except Exception as e:  # a broken model call fails this request only
            raise ApiError(500, "inference_failed", f"{type(e).__name__}: {e}") from e
        finally:
            state["pending"] -= 1
            state["served"] += 1

    # ---------------------------------------------------------------- errors
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return _err(exc.status, exc.error, exc.detail)

    @app.exception_handler(ImageInputError)
    async def _image_error(_: Request, exc: ImageInputError):
        return _err(exc.status, exc.error, exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException):
        name = _STATUS_NAMES.get(exc.status_code, "error")
        return JSONResponse({"error": name, "detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()))
            parts.append(f"{loc}: {e.get('msg')}")
        return _err(422, "validation_error", "; ".join(parts) or "invalid request")

    # ---------------------------------------------------------------- helpers
    async def read_upload(request: Request, field_names=("image", "file")) -> tuple[bytes | None, dict]:
        """Image bytes from a multipart part or the raw body, plus the other form fields."""
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_part_size=s.max_body)
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

    async def read_uploads(request: Request) -> list[tuple[str, bytes]]:
        """Every file part of a multipart body, in order, as (file name, bytes)."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(415, "unsupported_media_type", "send the images as multipart/form-data file parts "
                                                         "(repeat the field 'images')")
        too_many = ApiError(413, "too_many_images", f"more than {s.max_images} images in one request; split the "
                                                   "batch")
        try:
            form = await request.form(max_files=s.max_images, max_part_size=s.max_body)
        except StarletteHTTPException as e:  # the parser stops at the limit instead of reading every part
            if "too many files" in str(e.detail).lower():
                raise too_many from None
            raise
        try:
            ups = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            return [(u.filename or f"images[{i}]", await u.read()) for i, u in enumerate(ups)]
        finally:
            await form.close()

    def detect_many(parts: list[tuple[str, bytes]], debug: bool) -> dict:
        """Decode every part (a bad one is an item error), then classify all faces of all images at once."""
        items: list[dict] = []
        good: list[tuple[dict, Any]] = []
        for i, (name, data) in enumerate(parts):
            item = {"index": i, "filename": name}
            try:
                img = decode_image(data, s.max_pixels, f"images[{i}] ({name})")
            except ImageInputError as e:
                item.update(error=e.error, detail=e.detail)
            else:
                item["image"] = {"width": int(img.shape[1]), "height": int(img.shape[0])}
                good.append((item, img))
            items.append(item)

        def call(rec):
            imgs = [img for _, img in good]
            many = getattr(rec, "predict_images", None)  # the real recognizer batches every face in one call
            found = many(imgs) if many is not None else [rec.predict(img) for img in imgs]
            return rec.model_name, found

        model, found = faces.run(call) if good else (faces.model_name or s.face_model, [])
        for (item, _), fs in zip(good, found):
            item["faces"] = [face_json(f, debug) for f in fs]
        return {"results": items, "model": model, "n_images": len(items),
                "n_faces": sum(len(it.get("faces", ())) for it in items),
                "n_errors": sum("error" in it for it in items)}

    def detect(data: bytes, debug: bool, source: str) -> dict:
        img = decode_image(data, s.max_pixels, source)

        def call(rec):
            found = rec.predict(img)
            return rec.model_name, [face_json(f, debug) for f in found]

        model, found = faces.run(call)
        return {"faces": found, "model": model, "image": {"width": int(img.shape[1]), "height": int(img.shape[0])}}

    def check_texts(items: list[str], where: str = "texts") -> None:
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

    # ---------------------------------------------------------------- routes
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    try:  # Swagger UI 5 (OpenAPI 3.1) files as shipped inside the swagger-ui-py wheel: no CDN
        import swagger_ui

        app.mount("/_swagger", StaticFiles(directory=Path(swagger_ui.__file__).parent / "static"), name="swagger")
        _have_swagger = True
    except ImportError:
        _have_swagger = False

    @app.get("/docs", include_in_schema=False)
    async def docs():
        if not _have_swagger:
            return HTMLResponse('<p>Interactive docs need the swagger-ui-py package; the schema is at '
                                '<a href="/openapi.json">/openapi.json</a>.</p>')
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title="emotionlab API",
                                   swagger_js_url="/_swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/_swagger/swagger-ui.css",
                                   swagger_favicon_url="/_swagger/favicon-32x32.png",
                                   # no badge from validator.swagger.io: the docs must work offline
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.get("/health", summary="Liveness and what is loaded")
    async def health():
        return {"status": "ok", "version": __version__, "face_model": faces.model_name or s.face_model,
                "face_labels": faces.labels, "attributes": list(s.attributes),
                "tta": faces.tta or s.tta,
                "text_model": s.text_model, "text_models": list(texts.allowed),
                "shared_labels": list(SHARED_LABELS), "workers": s.workers, "pending": state["pending"],
                "served": state["served"], "uptime_s": round(time.time() - state["started"], 1),
                "limits": {"max_body": s.max_body, "max_pixels": s.max_pixels, "max_texts": s.max_texts,
                           "max_text_chars": s.max_text_chars, "max_images": s.max_images,
                           "timeout_s": s.timeout_s}}

    @app.post("/v1/faces", summary="Faces and their emotions in one image", openapi_extra=_IMAGE_BODY,
              responses=_ERRORS)
    async def v1_faces(request: Request, debug: bool = Query(False, description="Include the model's crop (PNG)")):
        """Send the image as multipart field ``image`` or as the raw body (any declared type; it is sniffed)."""
        t0 = time.perf_counter()
        data, _ = await read_upload(request)
        if data is None:
            raise ApiError(422, "missing_image", "multipart body has no file part; send the image as field 'image'")
        out = await offload(detect, data, debug, "image")
        out["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return out

    @app.post("/v1/faces/batch", summary="Faces and their emotions in several images (one model call)",
              openapi_extra=_BATCH_BODY, responses=_ERRORS)
    async def v1_faces_batch(request: Request, debug: bool = Query(False, description="Include the crops (PNG)")):
        """Send the images as repeated multipart file parts (field ``images``). A bad image is an error item
        (``{index, filename, error, detail}``) and the others are still answered; results keep the order sent."""
        t0 = time.perf_counter()
        parts = await read_uploads(request)
        if not parts:
            raise ApiError(422, "missing_image", "multipart body has no file part; send the images as field 'images'")
        out = await offload(detect_many, parts, debug)
        out["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return out

    @app.post("/v1/text", summary="Emotions in short texts", responses=_ERRORS)
    async def v1_text(req: TextRequest):
        t0 = time.perf_counter()
        check_texts(req.texts)
        texts.check_name(req.model)
        out = await offload(texts.predict, req.model, req.texts)
        out["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return out

    @app.post("/v1/analyze", summary="Face + text with a fused emotion distribution", openapi_extra=_ANALYZE_BODY,
              responses=_ERRORS)
    async def v1_analyze(request: Request, debug: bool = Query(False)):
        """Multipart with an ``image`` file and/or a ``text`` field (at least one); ``face_weight`` /
        ``text_weight`` override the server's fusion weights. The fused distribution is over FER7, built
        from the largest face and the text (see :mod:`emotionlab.serve.fusion`)."""
        t0 = time.perf_counter()
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            raise ApiError(415, "unsupported_media_type",
                           f"send multipart/form-data with fields image and/or text, not {ctype or 'no type'}")
        data, fields = await read_upload(request)
        text = fields.get("text")
        if text is not None and not text.strip():
            text = None if data is not None else text
        weights = {}
        for name, default in (("face_weight", s.face_weight), ("text_weight", s.text_weight)):
            raw = fields.get(name)
            try:
                weights[name] = float(raw) if raw not in (None, "") else default
            except ValueError:
                raise ApiError(422, "validation_error", f"{name}: {raw!r} is not a number") from None
            if not (weights[name] >= 0) or weights[name] == float("inf"):
                raise ApiError(422, "validation_error", f"{name}: must be a finite number >= 0, got {raw}")
        if data is None and text is None:
            raise ApiError(422, "validation_error", "send an image (field 'image'), a text (field 'text') or both")
        text_model_name = fields.get("text_model") or None
        if text is not None:
            check_texts([text], "text")
            texts.check_name(text_model_name)
        jobs = []
        if data is not None:
            jobs.append(offload(detect, data, debug, "image"))
        if text is not None:
            jobs.append(offload(texts.predict, text_model_name, [text]))
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
            text_error, text_out = {"error": text_out.error, "detail": text_out.detail}, None
        idx = _largest(face_out["faces"]) if face_out else None
        face_scores = face_out["faces"][idx]["scores"] if idx is not None else None
        text_preds = text_out["predictions"][0] if text_out else None
        try:
            fused = fuse(face_scores, text_preds, weights["face_weight"], weights["text_weight"])
        except ValueError as e:
            fused = {"label": None, "scores": None, "labels": list(SHARED_LABELS), "error": str(e)}
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

    @app.websocket("/v1/stream")
    async def v1_stream(ws: WebSocket, debug: bool = False, smoothing: float = 0.0):
        """Binary messages are frames (JPEG/PNG/WebP); text messages are JSON controls ``{"debug": bool,
        "smoothing": float}``. Each frame is answered with ``{"frame", "faces", "model", "took_ms"}`` or, for a bad
        frame, ``{"frame", "error", "detail"}``; the connection stays open either way."""
        await ws.accept()
        try:
            smoother = StreamSmoother(smoothing)
        except ValueError as e:
            await ws.send_json({"error": "validation_error", "detail": str(e)})
            await ws.close(code=1008)
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
                            raise TypeError("expected a JSON object")
                        if "debug" in ctl:
                            debug = bool(ctl["debug"])
                        if "smoothing" in ctl:
                            smoother = StreamSmoother(float(ctl["smoothing"]))
                        await ws.send_json({"ok": True, "debug": debug, "smoothing": smoother.a})
                    except (ValueError, TypeError) as e:
                        await ws.send_json({"error": "invalid_control", "detail": f"control message: {e}"})
                    continue
                data = msg.get("bytes") or b""
                n += 1
                t0 = time.perf_counter()
                if len(data) > s.max_body:
                    await ws.send_json({"frame": n, "error": "payload_too_large",
                                        "detail": f"frame of {len(data):,} bytes is over the limit of {s.max_body:,}"})
                    continue
                try:
                    out = await offload(detect, data, debug, f"frame {n}")
                except (ApiError, ImageInputError) as e:
                    await ws.send_json({"frame": n, "error": e.error, "detail": e.detail})
                    continue
                out["faces"] = smoother.update(out["faces"])
                out.update(frame=n, took_ms=round((time.perf_counter() - t0) * 1000, 2))
                await ws.send_json(out)
        except WebSocketDisconnect:
            pass

    return app


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


def app_from_env() -> FastAPI:
    """``uvicorn --factory emotionlab.serve.app:app_from_env``: the default app configured by environment."""
    return create_app(settings=settings_from_env())
