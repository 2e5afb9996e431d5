"""The decode guard, bounded detection, the streaming ``predict_iter`` and cooperative cancellation: small
versions of each class of hostile input (the full-size ones are in benchmarks/hostile_inputs.py)."""
from __future__ import annotations

import io
import struct
import threading
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from emotionlab.data.decode import DecodeLimits, ImageRejected, decode_image, jpeg_scans, probe_image
from emotionlab.data.errors import DataError
from emotionlab.inference.cancel import Cancelled, cancel_scope, checkpoint
from emotionlab.inference.detectors import MAX_TILES, detect_tiled, tiles


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h and whose data is one tiny compressed row: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def _jpeg(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", arr)
    assert ok
    return buf.tobytes()


def _multiscan_jpeg(repeats: int) -> bytes:
    """A progressive JPEG whose last (refinement) scan is repeated: tiny on disk, one decode pass per scan."""
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(buf, "JPEG", progressive=True)
    d = buf.getvalue()
    i, eoi = d.rfind(b"\xff\xda"), d.rfind(b"\xff\xd9")
    return d[:eoi] + d[i:eoi] * repeats + d[eoi:]


def test_pixel_bomb_is_refused_from_the_header_before_decoding():
    data = _png_header_only(30000, 30000)  # 900 MP claimed in ~100 bytes
    t0 = time.perf_counter()
    with pytest.raises(ImageRejected) as e:
        decode_image(data, "bomb.png", DecodeLimits())
    assert time.perf_counter() - t0 < 0.5
    assert e.value.status == 413 and e.value.error == "image_too_large" and "bomb.png" in str(e.value)


@pytest.mark.parametrize("shape", [(1, 4000), (4000, 1), (10, 400)])
def test_extreme_strips_are_refused_by_aspect_ratio(shape):
    with pytest.raises(ImageRejected) as e:
        decode_image(_png(np.zeros(shape, np.uint8)), "strip.png")
    assert e.value.error == "image_shape" and "aspect ratio" in str(e.value)


def test_a_wide_photo_under_the_aspect_limit_is_accepted():
    assert decode_image(_png(np.zeros((100, 3000, 3), np.uint8)), "pano.png").shape == (100, 3000, 3)


def test_jpeg_with_too_many_scans_is_refused_and_a_normal_one_decodes():
    ok = _multiscan_jpeg(0)
    assert 1 < jpeg_scans(ok) <= 12 and decode_image(ok).shape == (32, 32, 3)
    bad = _multiscan_jpeg(200)
    assert jpeg_scans(bad) > DecodeLimits().max_jpeg_scans
    with pytest.raises(ImageRejected) as e:
        decode_image(bad, "scans.jpg")
    assert e.value.error == "image_too_complex" and "scans" in str(e.value)


@pytest.mark.parametrize("data, error", [
    (b"", "empty_body"),
    (b"%PDF-1.4 lying.jpg", "unsupported_media_type"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 10, "invalid_image"),  # header cut short
])
def test_empty_lying_and_truncated_inputs_get_named_errors(data, error):
    with pytest.raises(ImageRejected) as e:
        decode_image(data, "x.jpg")
    assert e.value.error == error and str(e.value).startswith("x.jpg: ")
    assert "0x" not in str(e.value)  # no object reprs in messages


def test_truncated_jpeg_body_is_an_error_not_a_crash():
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    cut = buf.tobytes()[:200]
    try:
        img = decode_image(cut, "cut.jpg")
    except ImageRejected as e:
        assert e.error == "invalid_image"
    else:  # libjpeg may return the rows it got: still an image of the header's size
        assert img.shape == (64, 64, 3)


def test_byte_limit_and_limits_validation():
    with pytest.raises(ImageRejected, match="bytes is more than the limit"):
        probe_image(_png(np.zeros((8, 8), np.uint8)), "x.png", DecodeLimits(max_bytes=10))
    for bad in ({"max_pixels": 0}, {"max_aspect": float("nan")}, {"max_aspect": float("inf")}, {"max_bytes": -1}):
        with pytest.raises(ValueError):
            DecodeLimits(**bad)
    assert DecodeLimits.local().max_pixels > DecodeLimits().max_pixels  # the CLI may default higher...
    assert DecodeLimits.local().max_pixels < 10**9  # ...never unbounded


def test_sixteen_bit_gray_and_alpha_become_8bit_bgr():
    g16 = _png(np.full((20, 20), 0x8000, np.uint16))
    bgra = _png(np.dstack([np.full((20, 20, 3), 200, np.uint8), np.zeros((20, 20), np.uint8)]))
    for data in (g16, bgra):
        img = decode_image(data)
        assert img.dtype == np.uint8 and img.shape == (20, 20, 3)


@pytest.mark.parametrize("h, w", [(1, 4000), (4000, 1), (1, 20000), (100, 3000), (1080, 1920), (20000, 20000)])
def test_detector_tiles_are_bounded_whatever_the_shape(h, w):
    side = min(h, w) if min(h, w) < 800 else min(h, w) // 2
    ts = tiles(h, w, side)
    assert 1 <= len(ts) <= MAX_TILES
    covered_x = max(x + s for x, _, s in ts) >= w
    covered_y = max(y + s for _, y, s in ts) >= h
    assert covered_x and covered_y


class _CountingDetector:
    def __init__(self):
        self.calls = 0

    def detect(self, img):
        self.calls += 1
        return []


def test_tiled_detection_stops_at_a_cancel_checkpoint():
    det = _CountingDetector()
    ev = threading.Event()
    ev.set()
    with cancel_scope(ev), pytest.raises(Cancelled):
        detect_tiled(det, np.zeros((200, 6000, 3), np.uint8), 200)
    assert det.calls == 0
    detect_tiled(det, np.zeros((200, 6000, 3), np.uint8), 200)  # outside a scope: runs
    assert 1 < det.calls <= MAX_TILES
    checkpoint()  # no scope: never raises


class _FakeRec:
    """predict_iter of the real recognizer over a fake detector + classifier (no model files)."""

    def __init__(self):
        from emotionlab.inference.recognizer import FaceEmotionRecognizer

        self.cls = FaceEmotionRecognizer
        self.batches: list[int] = []

    def make(self):
        rec = object.__new__(self.cls)
        calls = self.batches

        def predict_images(images):
            calls.append(len(images))
            return [[] for _ in images]

        rec.predict_images = predict_images
        return rec


def test_predict_iter_keeps_order_reports_errors_and_bounds_the_batch(tmp_path):
    fake = _FakeRec()
    rec = fake.make()
    good = _png(np.zeros((40, 40, 3), np.uint8))
    (tmp_path / "a.png").write_bytes(good)
    items = [tmp_path / "a.png", ("b.png", good), ("empty.png", b""), str(tmp_path / "missing.png"),
             ("strip.png", _png(np.zeros((1, 500), np.uint8))), np.zeros((30, 30), np.uint8), ("c.png", good),
             ("d.png", good), ("e.png", good), ("video.mp4", DataError("video.mp4", "a video"))]
    out = list(rec.predict_iter(items, batch=2))
    assert [r.index for r in out] == list(range(len(items)))
    assert [r.error for r in out] == [None, None, "empty_body", "not_found", "image_shape", None, None, None, None,
                                      "invalid_input"]
    assert out[1].name == "b.png" and out[0].width == 40 and out[0].faces == []
    assert "missing.png" in out[3].detail and "no such file" in out[3].detail
    assert max(fake.batches) <= 2 and sum(fake.batches) == 6
    with pytest.raises(ValueError, match="batch"):
        list(rec.predict_iter(items, batch=0))


def test_predict_iter_is_lazy_over_its_input():
    """Memory is bounded by the batch: items are pulled only as they are needed."""
    fake = _FakeRec()
    rec = fake.make()
    pulled = []

    def gen():
        for i in range(1000):
            pulled.append(i)
            yield (f"{i}.png", _png(np.zeros((20, 20), np.uint8)))

    it = rec.predict_iter(gen(), batch=4)
    first = next(it)
    assert first.index == 0 and len(pulled) <= 4


@pytest.mark.parametrize("kw, match", [({"device": "nope"}, "not a device"),
                                       ({"min_detection_score": float("nan")}, "min_detection_score")])
def test_recognizer_refuses_garbage_parameters_before_loading(kw, match):
    from emotionlab.inference.recognizer import FaceEmotionRecognizer

    with pytest.raises(ValueError, match=match):
        FaceEmotionRecognizer(model="no-such-model-is-loaded-first", **kw)


def test_a_jpeg_too_small_for_its_declared_size_is_refused_before_decoding():
    """A 64x64 JPEG whose header claims 6000x6000 would decode as 36 MP of filler for a few hundred bytes."""
    small = _jpeg(np.full((64, 64, 3), 120, np.uint8))
    i = next(i for i in range(len(small) - 1) if small[i] == 0xFF and small[i + 1] in (0xC0, 0xC1, 0xC2))
    liar = bytearray(small)
    struct.pack_into(">HH", liar, i + 5, 6000, 6000)
    with pytest.raises(ImageRejected) as e:
        probe_image(bytes(liar), "liar.jpg")
    assert e.value.error == "invalid_image" and "cannot hold the 6000x6000" in str(e.value)
    # a real flat photo of a size where the rule could bite still decodes
    flat = _jpeg(np.zeros((1500, 1500, 3), np.uint8))
    assert probe_image(flat, "flat.jpg")[1:] == (1500, 1500)
