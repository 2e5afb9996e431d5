"""Image corruptions for stress tests: what real users' faces look like next to clean 48 px FER crops.

Each corruption maps uint8 face crops (N, H, W) to uint8 crops of the same shape, deterministically (a seed for
the random ones), so a robustness table is reproducible. Severities are fixed, named and documented, in the
spirit of ImageNet-C (Hendrycks & Dietterich 2019), chosen for faces: distance to the camera (low resolution),
focus and motion (blur), compression (JPEG), sensor noise, exposure, contrast and head tilt.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np


def _each(images: np.ndarray, f: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 crops of shape (N, H, W), got {arr.dtype} {arr.shape}")
    return np.stack([f(im, i) for i, im in enumerate(arr)]) if len(arr) else arr.copy()


def low_resolution(images: np.ndarray, side: int) -> np.ndarray:
    """A face ``side`` pixels wide (far from the camera), brought back to the crop size as a detector would."""
    def f(im, _):
        h, w = im.shape
        small = cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return _each(images, f)


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    return _each(images, lambda im, _: cv2.GaussianBlur(im, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE))


def motion_blur(images: np.ndarray, length: int) -> np.ndarray:
    """Horizontal motion blur over ``length`` pixels (a moving head or camera)."""
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0 / length
    return _each(images, lambda im, _: cv2.filter2D(im, -1, k, borderType=cv2.BORDER_REPLICATE))


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    def f(im, _):
        ok, buf = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return _each(images, f)


def gaussian_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Additive noise of ``sigma`` grey levels (of 255): a dim webcam."""
    rng = np.random.default_rng(seed)
    arr = np.asarray(images)
    noisy = arr.astype(np.float32) + rng.normal(0.0, sigma, arr.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def gamma(images: np.ndarray, g: float) -> np.ndarray:
    """Exposure: g > 1 darkens (under-exposed), g < 1 brightens (over-exposed)."""
    lut = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** g), 0, 255).astype(np.uint8)
    return lut[np.asarray(images)]


def contrast(images: np.ndarray, factor: float) -> np.ndarray:
    """Scale each face's contrast around its own mean (flat light, haze)."""
    arr = np.asarray(images).astype(np.float32)
    mean = arr.mean(axis=(1, 2), keepdims=True)
    return np.clip(np.rint(mean + factor * (arr - mean)), 0, 255).astype(np.uint8)


def rotation(images: np.ndarray, degrees: float, seed: int = 0) -> np.ndarray:
    """Head tilt of ``degrees``, left or right at random per face; borders replicated as in a real crop."""
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=len(images))

    def f(im, i):
        h, w = im.shape
        m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(signs[i] * degrees), 1.0)
        return cv2.warpAffine(im, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return _each(images, f)


#: name -> (function of uint8 crops, what it stands for). ``clean`` is the identity.
CORRUPTIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "clean": (lambda x: np.asarray(x).copy(), "the dataset crop as is"),
    "lowres_24": (lambda x: low_resolution(x, 24), "face 24 px wide, upscaled back"),
    "lowres_16": (lambda x: low_resolution(x, 16), "face 16 px wide, upscaled back"),
    "blur_1": (lambda x: gaussian_blur(x, 1.0), "Gaussian blur, sigma 1 px"),
    "blur_2": (lambda x: gaussian_blur(x, 2.0), "Gaussian blur, sigma 2 px"),
    "motion_5": (lambda x: motion_blur(x, 5), "horizontal motion blur, 5 px"),
    "jpeg_20": (lambda x: jpeg(x, 20), "JPEG quality 20"),
    "jpeg_10": (lambda x: jpeg(x, 10), "JPEG quality 10"),
    "noise_10": (lambda x: gaussian_noise(x, 10.0), "Gaussian noise, sigma 10 / 255"),
    "noise_25": (lambda x: gaussian_noise(x, 25.0), "Gaussian noise, sigma 25 / 255"),
    "dark": (lambda x: gamma(x, 2.2), "under-exposed (gamma 2.2)"),
    "bright": (lambda x: gamma(x, 0.45), "over-exposed (gamma 0.45)"),
    "low_contrast": (lambda x: contrast(x, 0.4), "contrast x 0.4 around the face's mean"),
    "tilt_15": (lambda x: rotation(x, 15.0), "head tilted 15 degrees, left or right"),
    "tilt_30": (lambda x: rotation(x, 30.0), "head tilted 30 degrees, left or right"),
}


def corrupt(images: np.ndarray, name: str) -> np.ndarray:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name][0](images)
