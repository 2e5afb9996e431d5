"""The face pipeline: detect (BlazeFace / Haar), track and classify faces in images, folders, video and webcam."""
from __future__ import annotations

from .detectors import Detection, create_detector, list_detectors
from .recognizer import Face, FaceEmotionRecognizer, FrameResult

__all__ = ["Detection", "Face", "FaceEmotionRecognizer", "FrameResult", "create_detector", "list_detectors"]
