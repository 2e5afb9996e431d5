"""``emotionlab serve``: the web API, the live webcam page and the OpenAPI docs on one port."""
from __future__ import annotations

import os

import typer

from .common import bounds, console, fail


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 exposes it to the network)."),
    port: int = typer.Option(8000, help="TCP port."),
    model: str = typer.Option("default", "--model", "-m", help="Face model: shipped name, run dir or .safetensors."),
    text_model: str = typer.Option("default", "--text-model", help="Default text model for /v1/text and fusion."),
    detector: str = typer.Option("auto", help="Face detector (see `emotionlab predict --help`)."),
    backend: str = typer.Option("auto", help="Inference backend: auto | torch | onnx."),
    workers: int = typer.Option(2, callback=bounds(1), help="Inference threads (one face model each)."),
    threads: int = typer.Option(0, callback=bounds(0), help="torch intra-op threads; 0 = CPU cores / workers."),
    max_body_mb: float = typer.Option(10.0, "--max-body-mb", callback=bounds(0, lo_open=True),
                                      help="Largest request body / stream frame in MB."),
    max_pixels: int = typer.Option(40_000_000, callback=bounds(1), help="Largest image (width x height) accepted."),
    max_images: int = typer.Option(32, callback=bounds(1), help="Most images in one /v1/faces/batch request."),
    timeout: float = typer.Option(30.0, callback=bounds(0, lo_open=True),
                                  help="Seconds one inference may take before a 504."),
    max_pending: int = typer.Option(64, callback=bounds(1), help="Jobs queued, running or stuck before new "
                                                                 "requests get 503 (before their body is read)."),
    max_batch_pixels: int = typer.Option(256_000_000, callback=bounds(1),
                                         help="Decoded pixels of all images of one /v1/faces/batch request."),
    max_connections: int = typer.Option(256, callback=bounds(1),
                                        help="Open connections before uvicorn answers 503 (limit_concurrency)."),
    keep_alive: int = typer.Option(5, "--keep-alive", callback=bounds(1),
                                   help="Seconds an idle keep-alive connection stays open."),
    body_timeout: float = typer.Option(10.0, "--body-timeout", callback=bounds(0, lo_open=True),
                                       help="Seconds a request body may take (plus 1 s per --body-min-rate bytes; "
                                            "no gap longer than this between chunks); then 408 and close."),
    body_min_rate: int = typer.Option(65536, "--body-min-rate", min=1,
                                      help="Bytes per second a request body must keep up on average."),
    header_timeout: float = typer.Option(10.0, "--header-timeout", callback=bounds(0, lo_open=True),
                                         help="Seconds a connection may take to send a complete request head."),
    allow_origin: list[str] = typer.Option([], "--allow-origin",
                                           help="Origin (scheme://host[:port]) whose pages may open WS /v1/stream, "
                                                "besides this server's own; repeat it; * allows any."),
    face_weight: float = typer.Option(0.5, callback=bounds(0), help="Fusion weight of the face in /v1/analyze."),
    text_weight: float = typer.Option(0.5, callback=bounds(0), help="Fusion weight of the text in /v1/analyze."),
    attributes: str = typer.Option("emotion", help="Per-face outputs: emotion, or emotion,gender to add apparent "
                                                   "gender (see the gender model card for its limits)."),
    min_confidence: float = typer.Option(0.0, "--min-confidence", callback=bounds(0, 1, hi_open=True),
                                         help="Label a face 'uncertain' when its top calibrated score is below "
                                              "this (requests may pass their own)."),
    tta: str = typer.Option("none", "--tta", help="Test-time augmentation of the face classifier: none | flip "
                                                  "(2x classify time) | ten (10x; 72.3 % vs 71.2 % for default)."),
    preload: bool = typer.Option(True, "--preload/--lazy", help="Load the models at start (fail fast)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve the REST API (/v1/faces, /v1/faces/batch, /v1/text, /v1/analyze, WS /v1/stream), the demo page (/)
    and docs (/docs)."""
    import uvicorn

    from ..serve.app import ServeSettings, create_app, uvicorn_options

    if port < 0 or port > 65535:
        fail(f"--port {port} is not a TCP port (0..65535)")
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    from ..models.hub import resolve

    resolve(model)  # a wrong --model is one clear line here, not a traceback from the server's start-up
    try:
        settings = ServeSettings(face_model=model, text_model=text_model, detector=detector, backend=backend,
                                 workers=workers, torch_threads=threads, max_body=int(max_body_mb * 1024 * 1024),
                                 max_pixels=max_pixels, max_images=max_images, timeout_s=timeout, face_weight=face_weight,
                                 text_weight=text_weight, preload=preload,
                                 attributes=attributes, tta=tta, max_pending=max_pending,
                                 min_confidence=min_confidence,
                                 max_batch_pixels=max_batch_pixels, max_connections=max_connections,
                                 keep_alive_s=keep_alive, body_timeout_s=body_timeout, body_min_rate=body_min_rate,
                                 header_timeout_s=header_timeout,
                                 allow_origins=tuple(allow_origin))
    except ValueError as e:
        fail(str(e))
    app = create_app(settings=settings)
    console.print(f"emotionlab serving on http://{host}:{port}/  (docs at /docs, {workers} workers x {threads} threads"
                  + (f", tta {tta}" if tta != "none" else "") + ")")
    uvicorn.run(app, host=host, port=port, log_level=log_level, **uvicorn_options(settings))
