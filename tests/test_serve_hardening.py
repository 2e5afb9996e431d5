"""The web service under hostile or unlucky clients: admission before the body, Retry-After, deadlines that
really stop work (and an honest /health while they do not), slow bodies, strict WebSocket parsing, the Origin
check, fusion weights at the edges of float, and error texts without object reprs.

Socket tests start uvicorn on a free loopback port in a thread; every loop and wait is bounded.
"""
from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from test_serve import FER7, FakeFace, FakeRecognizer, FakeText, assert_error, jpeg, png_bomb

from emotionlab.inference.cancel import checkpoint
from emotionlab.serve import create_app
from emotionlab.serve.fusion import fuse

COOP_WIDTH, STUBBORN_WIDTH = 31, 37  # image widths that make HardRecognizer slow (cooperative / not)


class HardRecognizer(FakeRecognizer):
    """FakeRecognizer plus two slow modes: one that stops at ``checkpoint()`` and one that ignores it and runs
    until ``release`` is set (bounded to 10 s)."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()
        self.coop_ended = threading.Event()

    def predict(self, image):
        w = image.shape[1]
        if w == COOP_WIDTH:
            try:
                for _ in range(500):  # up to 5 s, but stops at the first checkpoint after the deadline
                    checkpoint()
                    time.sleep(0.01)
            finally:
                self.coop_ended.set()
        if w == STUBBORN_WIDTH:
            self.release.wait(10)
        return super().predict(image)


def wait_until(cond, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(app, **config):
    """uvicorn serving ``app`` on 127.0.0.1:<free port> in a thread; yields the port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on",
                                           **config))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    try:
        assert wait_until(lambda: server.started, 10), "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        t.join(10)


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(head.encode() + body)
    return s


def read_response(s: socket.socket, limit: int = 65536) -> bytes:
    """Everything the server sends until it closes the connection (or the socket timeout)."""
    out = b""
    try:
        while len(out) < limit:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def post_head(path: str, length: int, ctype: str = "application/octet-stream") -> str:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n")


# ------------------------------------------------------------------ deadlines, stuck workers, health
def test_timeout_stops_cooperative_work_and_frees_the_worker():
    rec = HardRecognizer()
    with TestClient(create_app(rec, FakeText(), workers=1, timeout_s=0.3)) as c:
        t0 = time.perf_counter()
        assert_error(c.post("/v1/faces", content=jpeg(w=COOP_WIDTH)), 504, "timeout")
        assert time.perf_counter() - t0 < 2
        assert rec.coop_ended.wait(3), "the cancelled job kept running (it would run for 5 s)"
        assert wait_until(lambda: c.get("/health").json()["pending"] == 0, 2)
        h = c.get("/health").json()
        assert (h["status"], h["stuck_workers"]) == ("ok", 0)
        assert c.post("/v1/faces", content=jpeg()).status_code == 200


def test_stuck_worker_is_replaced_and_health_is_degraded_until_it_returns():
    rec = HardRecognizer()
    with TestClient(create_app(rec, FakeText(), workers=1, timeout_s=0.3)) as c:
        try:
            assert_error(c.post("/v1/faces", content=jpeg(w=STUBBORN_WIDTH)), 504, "timeout")
            h = c.get("/health").json()
            assert (h["status"], h["stuck_workers"], h["pending"]) == ("degraded", 1, 1), h
            # one worker, and it is stuck: a replacement thread answers the next request anyway
            t0 = time.perf_counter()
            r = c.post("/v1/faces", content=jpeg())
            assert r.status_code == 200 and time.perf_counter() - t0 < 3, r.text  # the stuck one blocks for 10 s
        finally:
            rec.release.set()
        assert wait_until(lambda: c.get("/health").json()["stuck_workers"] == 0, 5)
        h = c.get("/health").json()
        assert (h["status"], h["pending"], h["threads"]) == ("ok", 0, 1), h
        assert c.post("/v1/faces", content=jpeg()).status_code == 200


def test_cheap_checks_answer_while_the_pool_is_full():
    rec = HardRecognizer()
    with TestClient(create_app(rec, FakeText(), workers=1, timeout_s=5, max_stuck=0)) as c:
        slow: dict = {}
        t = threading.Thread(target=lambda: slow.setdefault("r", c.post("/v1/faces", content=jpeg(w=STUBBORN_WIDTH))))
        t.start()
        try:
            assert wait_until(lambda: c.get("/health").json()["pending"] == 1, 2)
            for body, status, error in ((b"", 400, "empty_body"), (b"%PDF-1.4", 415, "unsupported_media_type"),
                                        (png_bomb(20000, 20000), 413, "image_too_large"),
                                        (png_bomb(4000, 1), 422, "image_shape")):
                t0 = time.perf_counter()
                assert_error(c.post("/v1/faces", content=body), status, error)
                assert time.perf_counter() - t0 < 2, f"{error} waited behind the busy worker (busy for 10 s)"
        finally:
            rec.release.set()
            t.join(10)
        assert slow["r"].status_code == 200


def test_every_503_has_retry_after():
    rec = HardRecognizer()
    with TestClient(create_app(rec, FakeText(), workers=1, timeout_s=5, max_pending=1, retry_after_s=3)) as c:
        slow: dict = {}
        t = threading.Thread(target=lambda: slow.setdefault("r", c.post("/v1/faces", content=jpeg(w=STUBBORN_WIDTH))))
        t.start()
        try:
            assert wait_until(lambda: c.get("/health").json()["pending"] == 1, 2)
            for r in (c.post("/v1/faces", content=jpeg()), c.post("/v1/text", json={"texts": ["hi"]}),
                      c.post("/v1/analyze", data={"text": "hi"})):
                assert_error(r, 503, "busy")
                assert r.headers["retry-after"] == "3"
        finally:
            rec.release.set()
            t.join(10)

    def broken(name):
        raise FileNotFoundError(f"no text model {name}")

    with TestClient(create_app(FakeRecognizer(), None, text_loader=broken)) as c:
        r = c.post("/v1/text", json={"texts": ["hi"]})
        assert_error(r, 503, "model_unavailable")
        assert int(r.headers["retry-after"]) >= 1


def test_admission_is_decided_before_the_body_is_read():
    rec = HardRecognizer()
    app = create_app(rec, FakeText(), workers=1, timeout_s=5, max_pending=1, body_timeout_s=5)
    with live_server(app) as port:
        slow: dict = {}

        def occupy():
            s = raw_request(port, post_head("/v1/faces", len(jpeg(w=STUBBORN_WIDTH))), jpeg(w=STUBBORN_WIDTH))
            slow["r"] = read_response(s)
            s.close()

        t = threading.Thread(target=occupy)
        t.start()
        try:
            assert wait_until(lambda: app.state.serve.pool.pending == 1, 3)
            # headers that announce 1 MB, and no body at all: the answer comes at once, not after 5 s
            t0 = time.perf_counter()
            s = raw_request(port, post_head("/v1/faces", 1_000_000), timeout=3)
            resp = read_response(s)
            s.close()
            took = time.perf_counter() - t0
            assert resp.startswith(b"HTTP/1.1 503"), resp[:200]
            assert b"retry-after: 2" in resp.lower() and b'"busy"' in resp
            assert took < 2.5, f"503 took {took:.2f}s: the server waited for the body (5 s body timeout)"
        finally:
            rec.release.set()
            t.join(10)
        assert slow["r"].startswith(b"HTTP/1.1 200"), slow["r"][:200]


def test_slow_body_gets_408_and_the_connection_is_closed():
    app = create_app(FakeRecognizer(), FakeText(), body_timeout_s=0.5)
    with live_server(app) as port:
        socks = [raw_request(port, post_head("/v1/faces", 1000), b"\xff\xd8\xff" + b"\x00" * 7) for _ in range(5)]
        t0 = time.perf_counter()
        resps = []
        for s in socks:
            resps.append(read_response(s))  # read until the server closes it
            s.close()
        took = time.perf_counter() - t0
        for resp in resps:
            assert resp.startswith(b"HTTP/1.1 408"), resp[:200]
            assert b"connection: close" in resp.lower() and b'"timeout"' in resp
        assert took < 3, f"the stalled bodies were held for {took:.1f}s"
        # a normal request on a fresh connection is still answered
        s = raw_request(port, post_head("/v1/faces", len(jpeg())), jpeg())
        s.settimeout(3)
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        s.close()


def test_a_trickling_body_is_closed_by_the_total_deadline():
    """1 byte every 0.2 s never trips the per-chunk timeout; the minimum rate closes it anyway."""
    app = create_app(FakeRecognizer(), FakeText(), body_timeout_s=0.6, body_min_rate=1000)
    with live_server(app) as port:
        s = raw_request(port, post_head("/v1/faces", 1000), b"\xff", timeout=5)
        t0 = time.perf_counter()
        resp = b""
        while time.perf_counter() - t0 < 4:
            try:
                s.sendall(b"\x00")
            except OSError:  # closed by the server
                break
            s.settimeout(0.2)
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            resp += chunk
        s.settimeout(1)
        resp += read_response(s)
        s.close()
        assert time.perf_counter() - t0 < 2.5, "the trickling body was held past its deadline"
        assert resp.startswith(b"HTTP/1.1 408") and b"slower than the minimum" in resp, resp[:300]


def test_an_announced_oversized_body_is_drained_so_the_413_arrives():
    """A client that writes the whole body before reading gets the 413, not a connection reset."""
    app = create_app(FakeRecognizer(), FakeText(), max_body=2_000_000)
    with live_server(app) as port:
        body = b"\x00" * 8_000_000  # more than the socket buffers hold: without the drain, sendall is reset
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(post_head("/v1/faces", len(body)).encode() + body)  # raises ConnectionResetError if reset
        resp = b""
        while chunk := s.recv(4096):
            resp += chunk
        s.close()
        assert resp.startswith(b"HTTP/1.1 413") and b"8,000,000 bytes" in resp, resp[:300]
        # a client that waits for an answer after the head gets it at once, not after the drain deadline
        s = raw_request(port, post_head("/v1/faces", len(body)), timeout=1.0)
        assert s.recv(100).startswith(b"HTTP/1.1 413")
        s.close()


def test_a_client_gone_mid_body_is_one_log_line_not_a_traceback(caplog):
    app = create_app(FakeRecognizer(), FakeText())
    with caplog.at_level(logging.INFO), live_server(app, log_config=None) as port:
        for _ in range(3):
            s = raw_request(port, post_head("/v1/faces", 5000, "multipart/form-data; boundary=x"),
                            b"--x\r\nContent-Disposition: form-data; name=image; filename=a.jpg\r\n\r\n\xff\xd8")
            s.close()
        assert wait_until(lambda: sum("client disconnected" in r.getMessage() for r in caplog.records) >= 3, 5)
        ok = raw_request(port, post_head("/v1/faces", len(jpeg())), jpeg())
        ok.settimeout(3)
        assert ok.recv(100).startswith(b"HTTP/1.1 200")
        ok.close()
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged for a client that left"


def test_a_connection_that_never_completes_its_head_is_closed():
    from emotionlab.serve.app import uvicorn_options

    app = create_app(FakeRecognizer(), FakeText(), header_timeout_s=0.5, keep_alive_s=5)
    with live_server(app, **uvicorn_options(app.state.settings)) as port:
        idle = socket.create_connection(("127.0.0.1", port), timeout=3)
        half = raw_request(port, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n", timeout=3)
        t0 = time.perf_counter()
        assert idle.recv(100) == b"" and half.recv(100) == b"", "the server should close both"
        assert time.perf_counter() - t0 < 2.5
        idle.close()
        half.close()
        ok = raw_request(port, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=3)
        assert ok.recv(100).startswith(b"HTTP/1.1 200")
        ok.close()


# ------------------------------------------------------------------ WebSocket: strict controls and Origin
def test_stream_controls_are_parsed_strictly():
    with TestClient(create_app(FakeRecognizer(), FakeText())) as c, c.websocket_connect("/v1/stream") as ws:
        for bad in ('{"debug": "false"}', '{"debug": "true"}', '{"debug": 1}', '{"debug": null}',
                    '{"smoothing": "0.5"}', '{"smoothing": true}', '{"smoothing": NaN}', '{"smoothing": 1e999}',
                    '{"smoothing": 1}', '{"smoothing": -0.1}', '{"verbose": true}', '"debug"'):
            ws.send_text(bad)
            assert ws.receive_json()["error"] == "invalid_control", bad
        ws.send_bytes(jpeg())
        assert "crop" not in ws.receive_json()["faces"][0], "a refused control must not turn debug on"
        ws.send_text('{"debug": true, "smoothing": 0.25}')
        assert ws.receive_json() == {"ok": True, "debug": True, "smoothing": 0.25, "min_confidence": None}
        ws.send_text('{"debug": false}')
        assert ws.receive_json()["debug"] is False


def test_stream_min_confidence_control_relabels_and_refuses_garbage():
    with TestClient(create_app(FakeRecognizer(), FakeText())) as c, c.websocket_connect("/v1/stream") as ws:
        ws.send_bytes(jpeg())
        first = ws.receive_json()["faces"][0]
        assert first["label"] != "uncertain"
        for bad in ('{"min_confidence": 1}', '{"min_confidence": "0.5"}', '{"min_confidence": NaN}'):
            ws.send_text(bad)
            assert ws.receive_json()["error"] == "invalid_control", bad
        ws.send_text('{"min_confidence": 0.8}')  # the fake face's top score is 0.7
        assert ws.receive_json()["min_confidence"] == 0.8
        ws.send_bytes(jpeg())
        face = ws.receive_json()["faces"][0]
        assert face["label"] == "uncertain" and face["scores"] == first["scores"]
    with TestClient(create_app(FakeRecognizer(), FakeText())) as c, \
            c.websocket_connect("/v1/stream?min_confidence=0.8") as ws:
        ws.send_bytes(jpeg())
        assert ws.receive_json()["faces"][0]["label"] == "uncertain"


@pytest.mark.parametrize("query", ["debug=maybe", "smoothing=abc", "smoothing=nan", "smoothing=inf", "smoothing=1",
                                   "min_confidence=1", "min_confidence=x"])
def test_bad_stream_parameters_close_with_a_reason(query):
    with TestClient(create_app(FakeRecognizer(), FakeText())) as c, c.websocket_connect(f"/v1/stream?{query}") as ws:
        msg = ws.receive_json()
        assert msg["error"] == "validation_error" and query.split("=")[0] in msg["detail"]
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_json()
        assert e.value.code == 1008 and query.split("=")[0] in e.value.reason


def test_stream_origin_check():
    app = create_app(FakeRecognizer(), FakeText())
    with TestClient(app) as c:  # TestClient's Host header is "testserver"
        with c.websocket_connect("/v1/stream", headers={"origin": "http://evil.example"}) as ws:
            assert ws.receive_json()["error"] == "forbidden_origin"
            with pytest.raises(WebSocketDisconnect) as e:
                ws.receive_json()
            assert e.value.code == 1008 and "evil.example" in e.value.reason and "--allow-origin" in e.value.reason
        for headers in ({"origin": "http://testserver"}, {"origin": "HTTP://TestServer:80/"}, {}):
            with c.websocket_connect("/v1/stream", headers=headers) as ws:
                ws.send_bytes(jpeg())
                assert ws.receive_json()["faces"][0]["face_id"] == 1, headers
    with TestClient(create_app(FakeRecognizer(), FakeText(), allow_origins=("https://app.example:8443/",))) as c:
        with c.websocket_connect("/v1/stream", headers={"origin": "https://app.example:8443"}) as ws:
            ws.send_bytes(jpeg())
            assert ws.receive_json()["frame"] == 1
        with c.websocket_connect("/v1/stream", headers={"origin": "https://app.example"}) as ws:
            assert ws.receive_json()["error"] == "forbidden_origin"
    with TestClient(create_app(FakeRecognizer(), FakeText(), allow_origins=("*",))) as c:
        with c.websocket_connect("/v1/stream", headers={"origin": "null"}) as ws:
            ws.send_bytes(jpeg())
            assert ws.receive_json()["frame"] == 1
    with pytest.raises(ValueError, match="scheme://host"):
        create_app(FakeRecognizer(), FakeText(), allow_origins=("evil.example",))


def test_cli_allow_origin_and_connection_flags(monkeypatch):
    from typer.testing import CliRunner

    import uvicorn
    from emotionlab.cli import app

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    monkeypatch.setattr("emotionlab.models.hub.resolve", lambda name: name)  # no shipped model needed
    r = CliRunner().invoke(app, ["serve", "--lazy", "--allow-origin", "http://a.example:3000",
                                 "--allow-origin", "*", "--max-connections", "40", "--keep-alive", "3",
                                 "--body-timeout", "2.5", "--max-batch-pixels", "1000000", "--max-pending", "9"])
    assert r.exit_code == 0, r.output
    s = seen["app"].state.settings
    assert s.allow_origins == ("http://a.example:3000", "*")
    assert (s.body_timeout_s, s.max_batch_pixels, s.max_pending) == (2.5, 1_000_000, 9)
    assert (seen["limit_concurrency"], seen["timeout_keep_alive"]) == (40, 3)
    assert issubclass(seen["http"], __import__("uvicorn.protocols.http.h11_impl", fromlist=["x"]).H11Protocol)
    bad = CliRunner().invoke(app, ["serve", "--lazy", "--allow-origin", "ftp://x"])
    assert bad.exit_code == 2 and "scheme://host" in bad.output


# ------------------------------------------------------------------ fusion weights
def test_fusion_weights_at_the_edges_of_float():
    face = dict.fromkeys(FER7, 0.0) | {"sad": 1.0}
    text = [{"label": "joy", "score": 1.0}]
    big = fuse(face, text, 1e308, 1e308)
    assert big["weights"] == {"face": 0.5, "text": 0.5}
    assert big["scores"]["sad"] == pytest.approx(0.5) and big["scores"]["happy"] == pytest.approx(0.5)
    # smallest *normal* floats: subnormals read as 0 once a native library has set flush-to-zero (DAZ)
    tiny = fuse(face, text, 1e-307, 2e-307)
    assert tiny["weights"]["text"] == pytest.approx(2 / 3) and tiny["label"] == "happy"
    assert sum(tiny["scores"].values()) == pytest.approx(1.0)
    for fw, tw in ((math.nan, 1), (1, math.inf), (-1e-9, 1), (math.inf, math.inf)):
        with pytest.raises(ValueError, match="finite number >= 0"):
            fuse(face, text, fw, tw)


def test_analyze_normalizes_huge_weights_and_refuses_bad_ones():
    with TestClient(create_app(FakeRecognizer(), FakeText())) as c:
        img = ("a.jpg", jpeg(value=10), "image/jpeg")
        r = c.post("/v1/analyze", files={"image": img}, data={"text": "We won!", "face_weight": "1e308",
                                                               "text_weight": "1e308"})
        assert r.status_code == 200, r.text
        fused = r.json()["fused"]
        assert sum(fused["scores"].values()) == pytest.approx(1.0)
        assert fused["weights"] == {"face": 0.5, "text": 0.5} and fused["label"] in ("sad", "happy")
        for fw, tw in (("nan", "1"), ("1", "inf"), ("-1", "1"), ("1e999", "1"), ("0", "0"), ("-inf", "1")):
            body = assert_error(c.post("/v1/analyze", files={"image": img},
                                       data={"text": "hi", "face_weight": fw, "text_weight": tw}), 422,
                                "validation_error")
            assert "weight" in body["detail"]


def test_settings_refuse_non_finite_weights():
    from emotionlab.serve.app import ServeSettings

    for kw in ({"face_weight": math.nan}, {"text_weight": math.inf}, {"body_timeout_s": 0},
               {"max_connections": 0}, {"face_weight": -1.0}):
        with pytest.raises(ValueError):
            ServeSettings(**kw)
    assert ServeSettings(face_weight=1e308, text_weight=1e308).face_weight == 1e308


# ------------------------------------------------------------------ error texts
class ReprError(FakeRecognizer):
    def predict(self, image):
        raise RuntimeError(f"bad state in {object()!r}")


def test_no_object_address_in_any_error_detail():
    garbage = [b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, b"GIF89a" + b"\x00" * 5, b"II*\x00" + b"\x01" * 30,
               b"RIFF\x00\x00\x00\x00WEBPxxxx", b"BM" + b"\x00" * 40, b"\xff\xd8\xff" + b"\x00" * 3, b"",
               b"\x00" * 10]
    details = []
    with TestClient(create_app(FakeRecognizer(), FakeText())) as c:
        for data in garbage:
            r = c.post("/v1/faces", content=data)
            assert r.status_code in (400, 413, 415, 422), r.text
            details.append(r.json()["detail"])
        r = c.post("/v1/faces/batch", files=[("images", (f"{i}.bin", d, "image/png")) for i, d in enumerate(garbage)])
        details += [it["detail"] for it in r.json()["results"]]
        with c.websocket_connect("/v1/stream") as ws:
            for data in garbage[:-2]:
                ws.send_bytes(data)
                details.append(ws.receive_json()["detail"])
        details.append(c.post("/v1/analyze", data={"text": "hi", "face_weight": "x" * 500}).json()["detail"])
        details.append(c.post("/v1/faces", content=b"x", headers={"content-length": "abc"}).json()["detail"])
    with TestClient(create_app(ReprError(), FakeText())) as c:
        details.append(assert_error(c.post("/v1/faces", content=jpeg()), 500, "inference_failed")["detail"])
    assert len(details) > 20
    for d in details:
        assert "0x" not in d and " at 0x" not in d and len(d) < 1000, d


# ------------------------------------------------------------------ /v1/faces/batch: streaming and pixel budget
class IterRecognizer(FakeRecognizer):
    """Has ``predict_iter``: records the batch size the server asks for and the items it gets."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def predict_iter(self, items, batch=8, limits=None):
        from emotionlab.inference.recognizer import ItemResult
        from emotionlab.serve.imaging import ImageInputError, decode_image

        self.batches.append(batch)
        for i, (name, data) in enumerate(items):
            res = ItemResult(index=i, name=name)
            try:
                img = decode_image(data, limits.max_pixels, name)
            except ImageInputError as e:
                res.error, res.detail = e.error, e.detail
            else:
                res.faces, res.height, res.width = self.predict(img), img.shape[0], img.shape[1]
            yield res


def test_batch_uses_predict_iter_and_a_per_request_pixel_budget():
    rec = IterRecognizer()
    with TestClient(create_app(rec, FakeText(), max_batch_pixels=64 * 48 * 2 + 10)) as c:
        files = [("images", (f"{i}.jpg", jpeg(), "image/jpeg")) for i in range(3)]
        files.insert(1, ("images", ("bad.txt", b"nope", "text/plain")))
        body = c.post("/v1/faces/batch", files=files).json()
        a, bad, b, over = body["results"]
        assert a["faces"][0]["label"] == "happy" and b["image"] == {"width": 64, "height": 48}
        assert bad["error"] == "unsupported_media_type"
        assert over["error"] == "batch_too_large" and "images[3]" in over["detail"] and "faces" not in over
        assert (body["n_images"], body["n_faces"], body["n_errors"]) == (4, 2, 2)
        assert rec.batches and all(1 <= n <= 8 for n in rec.batches) and rec.calls == 2
        assert c.get("/health").json()["limits"]["max_batch_pixels"] == 64 * 48 * 2 + 10


def test_tracker_follows_the_services_face_dicts():
    from emotionlab.inference.tracking import FaceTracker

    tr = FaceTracker(smoothing=0.5, first_id=1)
    a = {"box": [0, 0, 50, 50], "label": "happy", "scores": {"happy": 0.9, "sad": 0.1}}
    tr.update([a])
    a2 = {"box": [3, 0, 50, 50], "label": "sad", "scores": {"happy": 0.1, "sad": 0.9}}
    tr.update([a2])
    assert a["face_id"] == a2["face_id"] == 1
    assert a2["scores"]["happy"] == pytest.approx(0.5) and a2["label"] in ("happy", "sad")
    face = FakeFace((0, 0, 50, 50), "happy", {"happy": 0.2, "sad": 0.8})
    tr.update([face])
    assert face.face_id == 1 and face.scores["sad"] == pytest.approx(0.5 * 0.5 + 0.5 * 0.8)
    assert not hasattr(__import__("emotionlab.serve.app", fromlist=["x"]), "StreamSmoother")
    assert json.dumps(a2) and np.isfinite(list(a2["scores"].values())).all()


def test_min_confidence_per_request_relabels_without_touching_scores():
    client = TestClient(create_app(FakeRecognizer(), FakeText()))
    img = jpeg()
    base = client.post("/v1/faces", content=img).json()["faces"][0]
    assert base["label"] != "uncertain" and max(base["scores"].values()) == pytest.approx(0.7)
    r = client.post("/v1/faces?min_confidence=0.8", content=img).json()["faces"][0]
    assert r["label"] == "uncertain" and r["scores"] == base["scores"]
    assert client.post("/v1/faces?min_confidence=0.6", content=img).json()["faces"][0]["label"] == base["label"]
    for bad in ("1", "-0.1", "nan", "high"):
        resp = client.post(f"/v1/faces?min_confidence={bad}", content=img)
        assert resp.status_code == 422, (bad, resp.text)
    with pytest.raises(ValueError, match="min_confidence"):
        create_app(FakeRecognizer(), FakeText(), min_confidence=1.5)
