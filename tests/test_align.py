"""Roll alignment: the crop turns with the head so the eyes come out level (data.preprocess)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from emotionlab.data.preprocess import PreprocessConfig, crop_face, eye_roll, prepare_faces


def _eyes_image(re=(80, 100), le=(120, 120)) -> np.ndarray:
    img = np.zeros((200, 200), np.uint8)
    cv2.circle(img, re, 3, 255, -1)
    cv2.circle(img, le, 3, 255, -1)
    return img


def _eye_rows(crop: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(crop > 100)
    mid = crop.shape[1] / 2
    return float(ys[xs < mid].mean()), float(ys[xs >= mid].mean())


def test_eye_roll_angle_and_degenerate_keypoints():
    assert eye_roll([(80, 100), (120, 120)]) == pytest.approx(math.degrees(math.atan2(20, 40)))
    assert eye_roll([(0, 0), (10, -10)]) == pytest.approx(-45.0)
    for bad in (None, [], [(1, 1)], [(1, 1), (1, 1)], [(0, 0), (math.nan, 3)]):
        assert eye_roll(bad) == 0.0


def test_aligned_crop_has_level_eyes_and_upright_crop_does_not():
    img, box, cfg = _eyes_image(), (60, 70, 80, 80), PreprocessConfig(size=96, expand=1.0)
    left, right = _eye_rows(crop_face(img, box, cfg))
    assert right - left > 15  # tilted as drawn
    left, right = _eye_rows(crop_face(img, box, cfg, eye_roll([(80, 100), (120, 120)])))
    assert abs(right - left) < 1.5


def test_tiny_roll_is_the_upright_crop_and_prepare_faces_passes_rolls():
    img, box = _eyes_image(), (60, 70, 80, 80)
    cfg = PreprocessConfig(size=48)
    assert np.array_equal(crop_face(img, box, cfg, 0.5), crop_face(img, box, cfg))
    x0, c0 = prepare_faces(img, [box], cfg)
    x1, c1 = prepare_faces(img, [box], cfg, [26.6])
    assert x0.shape == x1.shape == (1, 1, 48, 48) and not np.array_equal(c0, c1)


def test_aligned_crop_of_a_box_past_the_border_is_filled_not_empty():
    img = _eyes_image()
    crop = crop_face(img, (-150, 180, 100, 100), PreprocessConfig(size=48), 30.0)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
