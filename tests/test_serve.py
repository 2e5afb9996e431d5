"""API tests for the web service: every route and every error, with small fakes that follow the contracts."""
from __future__ import annotations

import base64
import struct
import threading
import time
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from emotionlab.serve import create_app
from emotionlab.serve.fusion import LABEL_MAP, SHARED_LABELS, fuse, to_shared
from emotionlab.serve.imaging import ImageInputError, decode_image, sniff_format

FER7 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
ERROR_WIDTH, SLOW_WIDTH = 13, 17  # image widths that make the fake recognizer fail / sleep


@dataclass
class FakeFace:
    """The Face contract of the pipeline helper."""

    box: tuple[int, int, int, int]
    label: str
    scores: dict[str, float]
    landmarks: list[tuple[float, float]] | None = None
    detection_score: float | None = None
    crop: np.ndarray | None = None
    face_id: int | None = None

    def to_dict(self) -> dict:
        return {"box": list(self.box), "label": self.label, "scores": dict(self.scores),
                "landmarks": None if self.landmarks is None else [list(p) for p in self.landmarks],
                "detection_score": self.detection_score}


class FakeRecognizer:
    """One face in the middle of any image wider than 20 px: happy if the image is bright, else sad."""

    labels = FER7
    model_name = "fake-face"

    def __init__(self):
        self.calls = 0

    def predict(self, image):
        self.calls += 1
        h, w = image.shape[:2]
        if w == ERROR_WIDTH:
            raise RuntimeError("model exploded")
        if w == SLOW_WIDTH:
            time.sleep(1.0)
        if w < 20:
            return []
        bright = float(np.mean(image)) > 127
        scores = dict.fromkeys(FER7, 0.05)
        scores["happy" if bright else "sad"] = 0.7
        label = max(scores, key=scores.get)
        return [FakeFace((w // 4, h // 4, w // 2, h // 2), label, scores, [(1.0, 2.0)], 0.9,
                         np.full((48, 48), 128, np.uint8))]


class FakeText:
    """TweetEval-like labels; '!' means joy, 'unfair' means anger, anything else sadness."""

    labels = ("anger", "joy", "optimism", "sadness")
    multi_label = False
    name = "fake-text"

    def __call__(self, texts):
        out = []
        for t in texts:
            if not t.strip():
                raise ValueError("text is empty")
            top = "joy" if "!" in t else "anger" if "unfair" in t else "sadness"
            scores = dict.fromkeys(self.labels, 0.1)
            scores[top] = 0.7
            out.append(sorted(({"label": k, "score": v} for k, v in scores.items()), key=lambda d: -d["score"]))
        return out


def jpeg(w: int = 64, h: int = 48, value: int = 200) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((h, w, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def png(w: int = 64, h: int = 48, value: int = 200) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((h, w), value, np.uint8))
    assert ok
    return buf.tobytes()


def png_bomb(w: int, h: int) -> bytes:
    """A tiny, well-formed PNG whose header claims w x h pixels (its pixels are never decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def assert_error(r, status: int, error: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    assert body["detail"]
    if error:
        assert body["error"] == error, body
    return body


@pytest.fixture
def face():
    return FakeRecognizer()


@pytest.fixture
def client(face):
    app = create_app(face, FakeText(), workers=2, timeout_s=5)
    with TestClient(app) as c:
        yield c


# ------------------------------------------------------------------ health, page, docs
def test_health_reports_models_and_limits(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["face_model"] == "fake-face"
    assert body["face_labels"] == FER7
    assert body["limits"]["max_body"] == 10 * 1024 * 1024
    assert body["shared_labels"] == list(SHARED_LABELS)


def test_page_and_every_asset_are_local(client):
    import re

    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    html = r.text
    refs = [r for r in re.findall(r'(?:src|href)="([^"]+)"', html) if not r.startswith("data:")]
    assert refs, "the page should reference its script and style"
    for ref in refs:
        assert not ref.startswith(("http:", "https:", "//")), f"external asset {ref}"
        assert client.get(ref).status_code == 200, ref
    for ref in refs:
        if ref.endswith((".js", ".css")):
            assert not re.search(r"https?://(?!127\.0\.0\.1|localhost)", client.get(ref).text), ref


def test_openapi_docs_are_served_locally(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/faces", "/v1/text", "/v1/analyze", "/health"):
        assert path in spec["paths"]
    assert "multipart/form-data" in spec["paths"]["/v1/faces"]["post"]["requestBody"]["content"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower()
    assert "http://" not in docs.text and "https://" not in docs.text, "docs must not load remote assets"
    assert client.get("/_swagger/swagger-ui-bundle.js").status_code == 200
    err = spec["paths"]["/v1/faces"]["post"]["responses"]["415"]["content"]["application/json"]["schema"]
    assert err["$ref"].endswith("/ErrorBody")


def test_unknown_route_and_wrong_method_are_json_errors(client):
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.get("/v1/faces"), 405, "method_not_allowed")


# ------------------------------------------------------------------ /v1/faces
def test_faces_multipart(client):
    r = client.post("/v1/faces", files={"image": ("a.jpg", jpeg(), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "fake-face"
    assert body["image"] == {"width": 64, "height": 48}
    assert isinstance(body["took_ms"], float)
    (f,) = body["faces"]
    assert f["box"] == [16, 12, 32, 24]
    assert f["label"] == "happy"
    assert set(f["scores"]) == set(FER7)
    assert "crop" not in f


def test_faces_raw_body_is_sniffed_not_trusted(client):
    # PNG bytes declared as text/plain are still read as an image...
    r = client.post("/v1/faces", content=png(value=10), headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.json()["faces"][0]["label"] == "sad"
    # ...and text declared as a JPEG is refused.
    body = assert_error(client.post("/v1/faces", content=b"hello, I am not a JPEG",
                                    headers={"content-type": "image/jpeg"}), 415, "unsupported_media_type")
    assert "jpeg" in body["detail"]


def test_faces_debug_includes_the_crop(client):
    r = client.post("/v1/faces?debug=1", content=jpeg())
    crop = r.json()["faces"][0]["crop"]
    img = cv2.imdecode(np.frombuffer(base64.b64decode(crop), np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape == (48, 48)


def test_faces_no_face_is_an_empty_list(client):
    r = client.post("/v1/faces", content=jpeg(w=18, h=18))
    assert r.status_code == 200 and r.json()["faces"] == []


def test_faces_input_errors(client):
    assert_error(client.post("/v1/faces", content=b""), 400, "empty_body")
    assert_error(client.post("/v1/faces", files={"other": (None, "text only")}), 422, "missing_image")
    assert_error(client.post("/v1/faces", content=jpeg()[:40]), 422, "invalid_image")
    assert_error(client.post("/v1/faces", content=b"\xff\xd8\xff" + b"\x00" * 100), 422, "invalid_image")


def test_decompression_bomb_refused_before_decoding(client):
    bomb = png_bomb(10000, 10000)
    assert len(bomb) < 200
    body = assert_error(client.post("/v1/faces", content=bomb), 413, "image_too_large")
    assert "10000x10000" in body["detail"] and "40,000,000" in body["detail"]
    huge = assert_error(client.post("/v1/faces", content=png_bomb(60000, 60000)), 413, "image_too_large")
    assert "40,000,000" in huge["detail"]


def test_pixel_and_body_limits_are_configurable(face):
    with TestClient(create_app(face, FakeText(), max_pixels=1000, max_body=2000)) as c:
        assert_error(c.post("/v1/faces", content=png(64, 48)), 413, "image_too_large")
        assert c.post("/v1/faces", content=png(30, 30)).status_code == 200
        big = jpeg(400, 400) + b"\x00" * 3000
        body = assert_error(c.post("/v1/faces", content=big), 413, "payload_too_large")
        assert "2,000" in body["detail"]

        def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield b"\xff\xd8\xff" + b"\x00" * 500

        assert_error(c.post("/v1/faces", content=chunks()), 413, "payload_too_large")
        assert_error(c.post("/v1/text", content=b'{"texts": ["' + b"a" * 3000 + b'"]}',
                            headers={"content-type": "application/json"}), 413, "payload_too_large")


def test_inference_failure_breaks_only_its_own_request(client, face):
    assert_error(client.post("/v1/faces", content=jpeg(w=ERROR_WIDTH)), 500, "inference_failed")
    r = client.post("/v1/faces", content=jpeg())
    assert r.status_code == 200 and len(r.json()["faces"]) == 1


def test_slow_request_does_not_block_others(face):
    with TestClient(create_app(face, FakeText(), workers=2, timeout_s=5)) as c:
        slow: dict = {}
        t = threading.Thread(target=lambda: slow.setdefault("r", c.post("/v1/faces", content=jpeg(w=SLOW_WIDTH,
                                                                                                   h=40))))
        t.start()
        time.sleep(0.15)
        t0 = time.perf_counter()
        fast = c.post("/v1/faces", content=jpeg())
        took = time.perf_counter() - t0
        assert fast.status_code == 200
        assert took < 0.6, f"a fast request waited {took:.2f}s behind a slow one"
        assert "r" not in slow, "the slow request should still be running"
        t.join()
        assert slow["r"].status_code == 200


def test_timeout_and_admission_control(face):
    with TestClient(create_app(face, FakeText(), workers=1, timeout_s=0.3, max_pending=1)) as c:
        res: dict = {}
        t = threading.Thread(target=lambda: res.setdefault("r", c.post("/v1/faces", content=jpeg(w=SLOW_WIDTH))))
        t.start()
        time.sleep(0.1)
        assert_error(c.post("/v1/faces", content=jpeg()), 503, "busy")
        t.join()
        assert_error(res["r"], 504, "timeout")


# ------------------------------------------------------------------ /v1/text
def test_text_predictions(client):
    r = client.post("/v1/text", json={"texts": ["We won!", "so unfair"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "fake-text"
    assert body["labels"] == list(FakeText.labels) and body["multi_label"] is False
    first, second = body["predictions"]
    assert first[0]["label"] == "joy" and second[0]["label"] == "anger"
    assert [p["score"] for p in first] == sorted((p["score"] for p in first), reverse=True)
    assert client.post("/v1/text", json={"texts": ["x"], "model": "fake-text"}).status_code == 200


def test_text_errors(client):
    assert_error(client.post("/v1/text", json={"texts": ["ok", "   "]}), 422, "invalid_text")
    assert "texts[1]" in client.post("/v1/text", json={"texts": ["ok", "   "]}).json()["detail"]
    assert_error(client.post("/v1/text", json={"texts": []}), 422, "validation_error")
    body = assert_error(client.post("/v1/text", json={"text": "hi"}), 422, "validation_error")
    assert "texts" in body["detail"]
    assert_error(client.post("/v1/text", json={"texts": "not a list"}), 422, "validation_error")
    assert_error(client.post("/v1/text", content=b"{not json", headers={"content-type": "application/json"}), 422)
    body = assert_error(client.post("/v1/text", json={"texts": ["hi"], "model": "../../etc/passwd"}), 404,
                        "unknown_model")
    assert "carer" in body["detail"]
    assert_error(client.post("/v1/text", json={"texts": ["a"] * 65}), 413, "too_many_texts")
    assert_error(client.post("/v1/text", json={"texts": ["a" * 5001]}), 413, "text_too_long")


def test_text_models_load_lazily_by_name(face):
    loaded = []

    def loader(name):
        loaded.append(name)
        m = FakeText()
        m.name = name
        return m

    with TestClient(create_app(face, None, text_loader=loader)) as c:
        assert loaded == []
        assert c.post("/v1/text", json={"texts": ["hi"], "model": "carer"}).json()["model"] == "carer"
        assert c.post("/v1/text", json={"texts": ["hi"], "model": "carer"}).status_code == 200
        assert c.post("/v1/text", json={"texts": ["hi"]}).json()["model"] == "default"
        assert loaded == ["carer", "default"]

    def broken(name):
        raise FileNotFoundError(f"no text model {name}")

    with TestClient(create_app(face, None, text_loader=broken)) as c:
        assert_error(c.post("/v1/text", json={"texts": ["hi"]}), 503, "model_unavailable")


# ------------------------------------------------------------------ /v1/analyze
def test_analyze_fuses_face_and_text(client):
    r = client.post("/v1/analyze", files={"image": ("a.jpg", jpeg(value=10), "image/jpeg")},
                    data={"text": "We won!"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["faces"][0]["label"] == "sad" and body["face_model"] == "fake-face"
    assert body["text"]["predictions"][0]["label"] == "joy"
    fused = body["fused"]
    assert fused["labels"] == list(SHARED_LABELS)
    assert abs(sum(fused["scores"].values()) - 1) < 1e-6
    assert fused["weights"] == {"face": 0.5, "text": 0.5}
    assert fused["face_index"] == 0
    # joy + optimism (text) and happy (face) all land on "happy"; sad on "sad"
    assert fused["scores"]["happy"] > fused["scores"]["angry"]


def test_analyze_weights_and_single_inputs(client):
    img = ("a.jpg", jpeg(value=10), "image/jpeg")
    only_face = client.post("/v1/analyze", files={"image": img},
                            data={"text": "We won!", "face_weight": "1", "text_weight": "0"}).json()["fused"]
    assert only_face["label"] == "sad" and only_face["weights"] == {"face": 1.0, "text": 0.0}
    only_text = client.post("/v1/analyze", files={"image": img},
                            data={"text": "We won!", "face_weight": "0", "text_weight": "2"}).json()["fused"]
    assert only_text["label"] == "happy"
    text_only = client.post("/v1/analyze", data={"text": "so unfair"}).json()
    assert text_only["faces"] == [] and text_only["fused"]["label"] == "angry"
    image_only = client.post("/v1/analyze", files={"image": img}).json()
    assert image_only["text"] is None and image_only["fused"]["label"] == "sad"
    no_face = client.post("/v1/analyze", files={"image": ("s.jpg", jpeg(18, 18), "image/jpeg")}).json()
    assert no_face["fused"]["label"] is None and "nothing to fuse" in no_face["fused"]["error"]


def test_analyze_errors(client):
    assert_error(client.post("/v1/analyze", json={"text": "hi"}), 415, "unsupported_media_type")
    assert_error(client.post("/v1/analyze", data={"face_weight": "1"}), 422, "validation_error")
    assert_error(client.post("/v1/analyze", data={"text": "hi", "face_weight": "heavy"}), 422, "validation_error")
    assert_error(client.post("/v1/analyze", data={"text": "hi", "text_weight": "-1"}), 422, "validation_error")
    assert_error(client.post("/v1/analyze", data={"text": "hi", "text_model": "nope"}), 404, "unknown_model")
    assert_error(client.post("/v1/analyze", files={"image": ("a.txt", b"plain text", "image/png")}), 415)


# ------------------------------------------------------------------ WS /v1/stream
def test_stream_answers_every_frame_and_survives_bad_ones(client):
    with client.websocket_connect("/v1/stream?smoothing=0.5") as ws:
        ws.send_bytes(jpeg())
        first = ws.receive_json()
        assert first["frame"] == 1 and first["model"] == "fake-face"
        assert first["faces"][0]["label"] == "happy" and first["faces"][0]["face_id"] == 1
        assert "crop" not in first["faces"][0]
        ws.send_bytes(b"not an image")
        bad = ws.receive_json()
        assert bad["frame"] == 2 and bad["error"] == "unsupported_media_type"
        ws.send_text('{"debug": true}')
        assert ws.receive_json()["debug"] is True
        ws.send_bytes(jpeg(value=10))  # same box, now dark: smoothing keeps happy/sad mixed
        third = ws.receive_json()
        f = third["faces"][0]
        assert third["frame"] == 3 and f["face_id"] == 1 and "crop" in f
        assert f["scores"]["happy"] == pytest.approx(0.5 * 0.7 + 0.5 * 0.05)
        ws.send_text("[1, 2]")
        assert ws.receive_json()["error"] == "invalid_control"


def test_stream_rejects_bad_smoothing(client):
    with client.websocket_connect("/v1/stream?smoothing=2") as ws:
        assert ws.receive_json()["error"] == "validation_error"


# ------------------------------------------------------------------ units: imaging and fusion
@pytest.mark.parametrize("ext,fmt", [(".jpg", "jpeg"), (".png", "png"), (".bmp", "bmp"), (".webp", "webp"),
                                     (".tiff", "tiff")])
def test_sniff_and_decode_formats(ext, fmt):
    _, buf = cv2.imencode(ext, np.full((10, 12, 3), 90, np.uint8))
    data = buf.tobytes()
    assert sniff_format(data) == fmt
    img = decode_image(data, 1000)
    assert img.shape[:2] == (10, 12)
    assert sniff_format(b"GIF89a....") == "gif"
    assert sniff_format(b"<html>") is None


def test_decode_image_errors_name_the_source():
    with pytest.raises(ImageInputError) as e:
        decode_image(b"%PDF-1.4", 1000, "frame 7")
    assert e.value.status == 415 and "frame 7" in e.value.detail


def test_fusion_label_space_mappings():
    for label in ("joy", "optimism", "love", "amusement", "gratitude", "happiness", "enthusiasm"):
        assert LABEL_MAP[label] == "happy"
    assert LABEL_MAP["anger"] == LABEL_MAP["annoyance"] == LABEL_MAP["hate"] == "angry"
    assert LABEL_MAP["nervousness"] == LABEL_MAP["worry"] == "fear"
    assert LABEL_MAP["contempt"] == "disgust"
    assert LABEL_MAP["grief"] == "sad" and LABEL_MAP["curiosity"] == "surprise"
    assert set(LABEL_MAP.values()) == set(SHARED_LABELS)
    dist, unmapped = to_shared({"joy": 0.3, "love": 0.3, "sarcasm": 0.4})
    assert dist["happy"] == pytest.approx(1.0) and unmapped == {"sarcasm": 0.4}


def test_fuse_weights_renormalize_and_validate():
    face = dict.fromkeys(FER7, 0.0) | {"sad": 1.0}
    text = [{"label": "joy", "score": 0.9}, {"label": "sadness", "score": 0.1}]
    out = fuse(face, text, face_weight=3, text_weight=1)
    assert out["weights"] == {"face": 0.75, "text": 0.25}
    assert out["scores"]["sad"] == pytest.approx(0.75 + 0.025)
    assert out["scores"]["happy"] == pytest.approx(0.225)
    assert out["label"] == "sad"
    # multi-label scores (not summing to 1) are normalized before weighting
    multi = fuse(None, {"joy": 0.9, "amusement": 0.9, "fear": 0.9})
    assert multi["scores"]["happy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="face_weight"):
        fuse(face, text, face_weight=-1)
    with pytest.raises(ValueError, match="nothing to fuse"):
        fuse(None, None)
    with pytest.raises(ValueError, match="all 0"):
        fuse(face, None, face_weight=0)


# ------------------------------------------------------------------ CLI
def test_cli_serve_is_registered():
    from typer.testing import CliRunner

    from emotionlab.cli import app

    r = CliRunner().invoke(app, ["serve", "--help"])
    assert r.exit_code == 0
    for opt in ("--host", "--port", "--max-body-mb", "--face-weight"):
        assert opt in r.output
    bad = CliRunner().invoke(app, ["serve", "--port", "70000"])
    assert bad.exit_code == 2 and "not a TCP port" in bad.output


def test_decode_applies_exif_orientation_and_reads_gif():
    import io

    from PIL import Image

    img = Image.new("RGB", (20, 10), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    assert decode_image(buf.getvalue(), 1000).shape == (20, 10, 3)
    gif = io.BytesIO()
    Image.new("P", (7, 5), 3).save(gif, "GIF")
    out = decode_image(gif.getvalue(), 1000)
    assert out.shape[:2] == (5, 7)


def test_settings_validation_and_environment(monkeypatch):
    from emotionlab.serve.app import ServeSettings, settings_from_env

    with pytest.raises(ValueError, match="workers"):
        ServeSettings(workers=0)
    with pytest.raises(ValueError, match="fusion weights"):
        ServeSettings(face_weight=0, text_weight=0)
    with pytest.raises(ValueError, match="unknown attribute"):
        ServeSettings(attributes=("emotion", "age"))
    assert ServeSettings(attributes="emotion,gender").attributes == ("emotion", "gender")
    with pytest.raises(ValueError, match="tta must be one of none, flip, ten"):
        ServeSettings(tta="five")
    monkeypatch.setenv("EMOTIONLAB_SERVE_TTA", "ten")
    assert settings_from_env().tta == "ten"
    monkeypatch.setenv("EMOTIONLAB_SERVE_MAX_BODY", "1234")
    monkeypatch.setenv("EMOTIONLAB_SERVE_PRELOAD", "yes")
    monkeypatch.setenv("EMOTIONLAB_SERVE_TEXT_MODELS", "default,carer")
    s = settings_from_env(workers=3)
    assert (s.max_body, s.preload, s.text_models, s.workers) == (1234, True, ("default", "carer"), 3)


def test_analyze_keeps_the_face_when_the_text_model_is_unavailable(face):
    def broken(name):
        raise ValueError(f"unknown text model {name!r}")

    with TestClient(create_app(face, None, text_loader=broken)) as c:
        r = c.post("/v1/analyze", files={"image": ("a.jpg", jpeg(value=10), "image/jpeg")}, data={"text": "hi"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["text"]["error"] == "model_unavailable" and "unknown text model" in body["text"]["detail"]
        assert body["fused"]["label"] == "sad" and body["fused"]["weights"] == {"face": 1.0}
        assert_error(c.post("/v1/analyze", data={"text": "hi"}), 503, "model_unavailable")


def test_cli_serve_unknown_model_fails_before_starting():
    from typer.testing import CliRunner

    from emotionlab.cli import app

    r = CliRunner().invoke(app, ["serve", "--model", "no_such_model", "--port", "1"])
    assert isinstance(r.exception, FileNotFoundError) and "no_such_model" in str(r.exception)


# ------------------------------------------------------------------ /v1/faces/batch
def test_faces_batch_keeps_order_and_answers_around_bad_images(client, face):
    files = [("images", ("a.jpg", jpeg(value=220), "image/jpeg")), ("images", ("b.txt", b"not an image", "text/plain")),
             ("images", ("c.png", png(value=30), "image/png")), ("images", ("tiny.png", png(w=10, h=10), "image/png"))]
    r = client.post("/v1/faces/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["n_images"], body["n_faces"], body["n_errors"], body["model"]) == (4, 2, 1, "fake-face")
    a, b, c, tiny = body["results"]
    assert [x["index"] for x in body["results"]] == [0, 1, 2, 3]
    assert (a["filename"], a["faces"][0]["label"], a["image"]) == ("a.jpg", "happy", {"width": 64, "height": 48})
    assert (b["filename"], b["error"]) == ("b.txt", "unsupported_media_type") and "images[1] (b.txt)" in b["detail"]
    assert "faces" not in b
    assert c["faces"][0]["label"] == "sad" and tiny["faces"] == []
    assert face.calls == 3  # the undecodable part never reached the model
    one = client.post("/v1/faces", files={"image": ("a.jpg", jpeg(value=220), "image/jpeg")}).json()
    assert a["faces"] == one["faces"]  # the same answer as the single-image route


def test_faces_batch_errors_and_limits(face):
    with TestClient(create_app(face, FakeText(), max_images=2)) as c:
        assert_error(c.post("/v1/faces/batch", content=jpeg(), headers={"content-type": "image/jpeg"}), 415,
                     "unsupported_media_type")
        assert_error(c.post("/v1/faces/batch", data={"text": "no files"}), 415, "unsupported_media_type")
        assert_error(c.post("/v1/faces/batch", files={"text": (None, "a field, no file")}), 422, "missing_image")
        assert_error(c.post("/v1/faces/batch", files=[("images", (f"{i}.jpg", jpeg(), "image/jpeg"))
                                                      for i in range(3)]), 413, "too_many_images")
        assert_error(c.post("/v1/faces/batch", files=[("images", (f"{i}.jpg", jpeg(), "image/jpeg"))
                                                      for i in range(5)]), 413, "too_many_images")
        ok = c.post("/v1/faces/batch", files=[("images", (f"{i}.jpg", jpeg(), "image/jpeg")) for i in range(2)])
        assert ok.status_code == 200 and ok.json()["n_faces"] == 2
        assert c.get("/health").json()["limits"]["max_images"] == 2
        bad = c.post("/v1/faces/batch", files=[("images", ("e.jpg", jpeg(w=ERROR_WIDTH), "image/jpeg"))])
        assert_error(bad, 500, "inference_failed")
