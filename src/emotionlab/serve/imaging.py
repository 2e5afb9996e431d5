"""Turning untrusted request bytes into an image, with the checks a public endpoint needs.

The declared content type is never trusted: the format comes from the file's magic bytes, the pixel count
is read from the header *before* the pixels are decoded (so a small file that claims 100k x 100k pixels --
a decompression bomb -- is refused without allocating anything), and decoding errors become clear 4xx
errors instead of a 500.
"""
from __future__ import annotations

import numpy as np

from ..data.decode import SUPPORTED_FORMATS, DecodeLimits, ImageRejected, sniff_format
from ..data.decode import decode_image as _decode

__all__ = ["ImageInputError", "SUPPORTED_FORMATS", "decode_image", "encode_png_b64", "sniff_format"]


class ImageInputError(Exception):
    """A request image was refused; ``status`` is the HTTP code, ``error`` a short machine-readable name."""

    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def decode_image(data: bytes, max_pixels: int, source: str = "image",
                 limits: DecodeLimits | None = None) -> np.ndarray:
    """Untrusted bytes -> BGR uint8 image through the project's decode guard
    (:func:`emotionlab.data.decode.decode_image`), its refusals mapped to HTTP: 400 empty body, 415 not an
    image (by magic bytes), 413 over the pixel / byte limit (read from the header, before decoding), 422
    corrupt, truncated, extreme aspect ratio or too many JPEG scans."""
    lim = limits if limits is not None else DecodeLimits(max_pixels=int(max_pixels))
    try:
        return _decode(data, source, lim)
    except ImageRejected as e:
        raise ImageInputError(e.status, e.error, f"{source}: {e.message}") from None


def encode_png_b64(gray: np.ndarray) -> str:
    """A small uint8 image -> base64 PNG string (the debug view of the face the model saw)."""
    import base64

    import cv2

    ok, buf = cv2.imencode(".png", np.asarray(gray, dtype=np.uint8))
    if not ok:
        raise ValueError("could not PNG-encode the face crop")
    return base64.b64encode(buf.tobytes()).decode("ascii")
