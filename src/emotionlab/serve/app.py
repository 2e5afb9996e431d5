"""The FastAPI service: face, text and fused emotion endpoints, a live WebSocket stream and the demo page.

This module wires the app; the routes live in :mod:`emotionlab.serve.routes` (one router per resource) over
one :class:`~emotionlab.serve.state.ServeState` on ``app.state.serve``. Design choices that matter in
production:

* **Limits first, on the event loop.** Admission is decided when a request arrives, before its body is read
  (503 with ``Retry-After`` when ``max_pending`` jobs are queued, running or stuck); a body larger than
  ``max_body`` is refused (413) and each body chunk must arrive within ``body_timeout_s`` (408), see
  :mod:`~emotionlab.serve.middleware`. Images are sniffed by magic bytes (415) and their pixel count and shape
  are checked from the header (413 / 422) before any work is queued. Every error is JSON
  ``{"error": short_name, "detail": human sentence}`` with no object reprs.
* **Inference off the event loop, with deadlines that hold.** Decoding and model calls run in a pool of
  ``workers`` threads (:mod:`~emotionlab.serve.workers`), one face recognizer each. A job past ``timeout_s`` is
  cancelled (504): cooperative code stops at its next checkpoint; a job that keeps running is counted stuck
  (``/health`` says ``degraded``) and its thread replaced, so capacity stays ``workers``.
* **Connections are bounded**: ``emotionlab serve`` starts uvicorn with :func:`uvicorn_options`:
  ``limit_concurrency`` = ``max_connections``, ``timeout_keep_alive`` = ``keep_alive_s`` and an h11 protocol
  that closes a connection whose request head is not complete within ``header_timeout_s``.
* **Injectable models.** ``create_app(face_recognizer=..., text_model=...)`` takes ready objects (tests, other
  embedders); by default the shipped models load lazily on first use (or at start with ``preload``).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .errors import STATUS_NAMES, ApiError, err
from .fusion import SHARED_LABELS
from .imaging import ImageInputError
from .middleware import GuardMiddleware
from .models import FacePool, TextModels
from .protocol import uvicorn_options
from .routes import ROUTERS
from .settings import SHIPPED_TEXT_MODELS, ServeSettings, settings_from_env
from .state import ServeState, face_json
from .workers import WorkerPool

__all__ = ["SHIPPED_TEXT_MODELS", "STATIC_DIR", "ApiError", "FacePool", "ServeSettings", "ServeState",
           "TextModels", "app_from_env", "create_app", "face_json", "settings_from_env", "uvicorn_options"]

log = logging.getLogger("emotionlab.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"


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
                                         attributes=s.attributes, tta=s.tta, min_confidence=s.min_confidence)

    faces = FacePool(s.workers, factory=face_factory, instance=face_recognizer)

    def new_pool() -> WorkerPool:
        return WorkerPool(s.workers, max_stuck=s.max_stuck, on_replace=faces.replace_holder)

    st = ServeState(settings=s, faces=faces, texts=TextModels(s, instance=text_model, loader=text_loader),
                    pool=new_pool())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if s.torch_threads:
            import torch

            torch.set_num_threads(int(s.torch_threads))
        if st.pool.closed:  # the app is started again (tests enter a TestClient more than once)
            st.pool = new_pool()
        try:
            if s.preload:
                await asyncio.wrap_future(st.pool.submit(faces.preload).future)  # no face model: fail fast
                try:  # one prediction, so that lazily loaded parts (the sentence encoder) load now too
                    await asyncio.wrap_future(st.pool.submit(st.texts.predict, None, ["preload"]).future)
                except ApiError as e:  # the face API is still useful; text routes answer 503 with this reason
                    log.warning("text model not loaded: %s", e.detail)
            yield
        finally:
            st.pool.shutdown()

    app = FastAPI(title="emotionlab", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Face and text emotion recognition, fully offline. Errors are JSON "
                              "`{\"error\", \"detail\"}`; 503 carries `Retry-After`. Fused results use the FER7 "
                              f"label space ({', '.join(SHARED_LABELS)}). Live video: `WS /v1/stream` takes binary "
                              "JPEG/PNG frames and answers each with `{frame, faces, model, image, took_ms}` (or "
                              "`{frame, error, detail}`); JSON text messages `{debug, smoothing}` change settings. "
                              "The demo page is at `/`.")
    app.state.serve = st
    app.state.settings, app.state.faces, app.state.texts = s, faces, st.texts
    app.add_middleware(GuardMiddleware, state=st)

    # ---------------------------------------------------------------- errors
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return err(exc.status, exc.error, exc.detail, retry_after=s.retry_after_s)

    @app.exception_handler(ImageInputError)
    async def _image_error(_: Request, exc: ImageInputError):
        return err(exc.status, exc.error, exc.detail, retry_after=s.retry_after_s)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException):
        return err(exc.status_code, STATUS_NAMES.get(exc.status_code, "error"), exc.detail,
                   retry_after=s.retry_after_s, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()))
            parts.append(f"{loc}: {e.get('msg')}")
        return err(422, "validation_error", "; ".join(parts) or "invalid request")

    # ---------------------------------------------------------------- routes, page, docs
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    try:  # Swagger UI 5 (OpenAPI 3.1) files as shipped inside the swagger-ui-py wheel: no CDN
        import swagger_ui

        app.mount("/_swagger", StaticFiles(directory=Path(swagger_ui.__file__).parent / "static"), name="swagger")
        have_swagger = True
    except ImportError:
        have_swagger = False

    @app.get("/docs", include_in_schema=False)
    async def docs():
        if not have_swagger:
            return HTMLResponse('<p>Interactive docs need the swagger-ui-py package; the schema is at '
                                '<a href="/openapi.json">/openapi.json</a>.</p>')
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title="emotionlab API",
                                   swagger_js_url="/_swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/_swagger/swagger-ui.css",
                                   swagger_favicon_url="/_swagger/favicon-32x32.png",
                                   # no badge from validator.swagger.io: the docs must work offline
                                   swagger_ui_parameters={"validatorUrl": None})

    return app


def app_from_env() -> FastAPI:
    """``uvicorn --factory emotionlab.serve.app:app_from_env``: the default app configured by environment.
    Pass ``--limit-concurrency`` and ``--timeout-keep-alive`` to uvicorn yourself (the body timeout is in the
    app; the request-head timeout needs ``uvicorn.run(app, **uvicorn_options(settings))``)."""
    return create_app(settings=settings_from_env())
