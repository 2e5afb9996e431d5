"""Turning untrusted request bytes into an image, with the checks a public endpoint needs.

The declared content type is never trusted: the format comes from the file's magic bytes, the pixel count
is read from the header *before* the pixels are decoded (so a small file that claims 100k x 100k pixels --
a decompression bomb -- is refused without allocating anything), and decoding errors become clear 4xx
errors instead of a 500.
"""
from __future__ import annotations

import io
import warnings

import numpy as np

# (magic prefix, offset, format name); WebP is RIFF....WEBP and is checked separately.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"BM", 0, "bmp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
)
SUPPORTED_FORMATS = ("jpeg", "png", "webp", "bmp", "gif", "tiff")


class ImageInputError(Exception):
    """A request image was refused; ``status`` is the HTTP code, ``error`` a short machine-readable name."""

    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def sniff_format(data: bytes) -> str | None:
    """The image format from the first bytes, or None when they are not a supported image."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, off, name in _MAGIC:
        if data[off:off + len(magic)] == magic:
            return name
    return None


def decode_image(data: bytes, max_pixels: int, source: str = "image") -> np.ndarray:
    """Untrusted bytes -> BGR uint8 image (EXIF orientation applied, first frame of animations).

    Raises ImageInputError: 400 empty body, 415 not an image (by magic bytes), 413 more than ``max_pixels``
    pixels (read from the header, before decoding), 422 corrupt or truncated image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ImageInputError(400, "empty_body", f"{source}: no bytes received; send a JPEG/PNG/WebP image")
    fmt = sniff_format(data)
    if fmt is None:
        head = data[:8].hex(" ")
        raise ImageInputError(415, "unsupported_media_type",
                              f"{source}: not a supported image (first bytes {head}); "
                              f"expected one of {', '.join(SUPPORTED_FORMATS)}")
    try:
        with warnings.catch_warnings():
            # Our own limit below is the one that counts; PIL's warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # lazy: reads the header only
        w, h = img.size
    except Image.DecompressionBombError as e:
        raise ImageInputError(413, "image_too_large", f"{source}: over the limit of {max_pixels:,} pixels ({e})")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageInputError(422, "invalid_image", f"{source}: looks like {fmt} but its header is unreadable ({e})")
    if w <= 0 or h <= 0:
        raise ImageInputError(422, "invalid_image", f"{source}: {fmt} header gives an empty size {w}x{h}")
    if w * h > max_pixels:
        raise ImageInputError(413, "image_too_large",
                              f"{source}: {w}x{h} = {w * h:,} pixels is more than the limit of {max_pixels:,}")
    # OpenCV decodes the common formats ~3x faster than PIL and applies the EXIF orientation itself;
    # PIL is the fallback for what OpenCV cannot read (GIF, some TIFF / WebP variants).
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if fmt != "gif" else None
    if arr is not None:
        return arr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = ImageOps.exif_transpose(img)
            arr = np.asarray(img if img.mode == "L" else img.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageInputError(422, "invalid_image", f"{source}: {fmt} image could not be decoded ({e})")
    if arr.ndim == 2:
        return np.ascontiguousarray(arr)
    return np.ascontiguousarray(arr[:, :, ::-1])  # RGB -> BGR, the OpenCV order the pipeline expects


def encode_png_b64(gray: np.ndarray) -> str:
    """A small uint8 image -> base64 PNG string (the debug view of the face the model saw)."""
    import base64

    import cv2

    ok, buf = cv2.imencode(".png", np.asarray(gray, dtype=np.uint8))
    if not ok:
        raise ValueError("could not PNG-encode the face crop")
    return base64.b64encode(buf.tobytes()).decode("ascii")
