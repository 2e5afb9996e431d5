"""``FaceEmotionRecognizer``: detect faces, crop them with the one preprocessing path, classify them in one batch.

All faces of an image (and all images given to :meth:`predict_batch`) go through the classifier in a single
call. ONNX Runtime is the default CPU backend (the model is exported once to the cache, keyed by its weights'
hash); PyTorch is the fallback and the GPU path.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.preprocess import prepare_faces, to_uint8
from .detectors import Detection, create_detector


@dataclass
class Face:
    """One detected face and its emotion distribution."""

    box: tuple[int, int, int, int]  # x, y, w, h in original image pixels
    label: str
    scores: dict[str, float]  # all classes, sums to 1
    landmarks: list[tuple[float, float]] | None = None
    detection_score: float | None = None
    crop: np.ndarray | None = field(default=None, repr=False)  # the normalized (S,S) uint8 face the model saw
    face_id: int | None = None
    gender: dict | None = None  # {"label", "scores"}: apparent gender, only with attributes=(..., "gender")

    @property
    def score(self) -> float:
        return float(self.scores[self.label])

    def to_dict(self) -> dict:
        """JSON-safe dict (no crop)."""
        return {"box": [int(v) for v in self.box], "label": self.label,
                "scores": {k: float(v) for k, v in self.scores.items()},
                "landmarks": [[float(x), float(y)] for x, y in self.landmarks] if self.landmarks is not None else None,
                "detection_score": float(self.detection_score) if self.detection_score is not None else None,
                **({"gender": {"label": self.gender["label"],
                               "scores": {k: float(v) for k, v in self.gender["scores"].items()}}}
                   if self.gender is not None else {})}


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Gray / BGR / BGRA, 8 or 16 bit or float -> 8-bit BGR, the detectors' input."""
    import cv2

    img = to_uint8(image)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return np.ascontiguousarray(img)
    raise ValueError(f"image has shape {img.shape}; expected (H,W), (H,W,1), (H,W,3) BGR or (H,W,4) BGRA")


def load_image(image_or_path, name: str | None = None) -> np.ndarray:
    """A path (EXIF honoured, clear DataError on missing or bad files), encoded bytes (``name`` names them in
    errors; Spark's ``binaryFile`` content) or an array -> 8-bit BGR."""
    if isinstance(image_or_path, (bytes, bytearray, memoryview)):
        from ..data.folders import decode_image

        return to_bgr8(decode_image(image_or_path, name or "<bytes>"))
    if isinstance(image_or_path, (str, os.PathLike)):
        from ..data.errors import DataError
        from ..data.folders import read_image

        if not Path(image_or_path).exists():
            raise DataError(image_or_path, "no such file")
        return to_bgr8(read_image(Path(image_or_path)))
    return to_bgr8(image_or_path)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


ATTRIBUTES = ("emotion", "gender")


def parse_attributes(attributes) -> tuple[str, ...]:
    """``"emotion,gender"`` or a sequence -> validated tuple; emotion is always computed (it is ``Face.label``)."""
    names = [a.strip().lower() for a in (attributes.split(",") if isinstance(attributes, str) else attributes)]
    names = [a for a in names if a]
    bad = [a for a in names if a not in ATTRIBUTES]
    if bad:
        raise ValueError(f"unknown attribute(s) {bad}; known: {', '.join(ATTRIBUTES)}")
    if "emotion" not in names:
        raise ValueError(f"attributes {names} must include 'emotion' (each face's label and scores)")
    return tuple(dict.fromkeys(names))


def crop_pre(pre, crop_expand: float | None):
    """The model's preprocessing, with the detector's own crop expansion where it has one (``none``: 1.0)."""
    from dataclasses import replace

    return pre if crop_expand is None else replace(pre, expand=crop_expand, shift_y=0.0)


class AttributeClassifier:
    """A second face classifier (apparent gender) on the same detector boxes, cut with its own model card's
    preprocessing, so it keeps working whatever the emotion model's input size or architecture is."""

    def __init__(self, model: str, device: str = "cpu", backend: str = "auto", threads: int | None = None):
        from ..models.hub import load_model

        self.loaded = load_model(model, device)
        self.labels: list[str] = self.loaded.labels
        self.pre = self.loaded.preprocess
        self.device = device
        self._sess = None
        self.backend = "torch"
        if backend == "torch" or (backend == "auto" and str(device) != "cpu"):
            return
        try:
            import onnxruntime as ort

            from .onnx_export import cached_model_onnx

            so = ort.SessionOptions()
            so.intra_op_num_threads = int(threads or 1)
            so.inter_op_num_threads = 1
            self._sess = ort.InferenceSession(str(cached_model_onnx(self.loaded)), so,
                                              providers=["CPUExecutionProvider"])
            self._in_name = self._sess.get_inputs()[0].name
            self.backend = "onnxruntime"
        except Exception as e:
            if backend == "onnx":
                raise RuntimeError(f"ONNX Runtime backend failed for {self.loaded.name}: {e}") from e

    def classify(self, model_input: np.ndarray) -> np.ndarray:
        if len(model_input) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        if self._sess is not None:
            logits = self._sess.run(None, {self._in_name: np.ascontiguousarray(model_input, np.float32)})[0]
        else:
            import torch

            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(model_input, np.float32)).to(self.device)
                logits = self.loaded.model(x).float().cpu().numpy()
        return _softmax(logits.astype(np.float64)).astype(np.float32)

    def predict(self, images_bgr: list[np.ndarray], dets: list, crop_expand: float | None = None) -> np.ndarray:
        """Probabilities for every face of every image, in one batched call."""
        pre = crop_pre(self.pre, crop_expand)
        inputs = [prepare_faces(img, [d.box for d in ds], pre)[0] for img, ds in zip(images_bgr, dets)]
        return self.classify(np.concatenate(inputs)) if inputs else np.zeros((0, len(self.labels)), np.float32)


#: test-time augmentation of the classifier: the views of ``emotionlab.training.engine.tta_views``
TTA_MODES = ("none", "flip", "ten")


class FaceEmotionRecognizer:
    """Faces and emotions in images, folders and video.

    ``model``: shipped name, alias or run directory (``emotionlab.models.hub.load_model``); ``detector``: one of
    ``emotionlab.inference.detectors.list_detectors()``; ``backend``: ``auto`` (ONNX Runtime on CPU, PyTorch
    on GPU), ``onnx`` or ``torch``. ``attributes``: ``("emotion",)`` (default) or ``("emotion", "gender")``
    to add each face's apparent binary gender (``Face.gender`` = ``{label, scores}``) from ``gender_model``
    (a separate small model: see its model card for what it can and cannot tell, and its license).
    ``tta``: ``none`` (default), ``flip`` (2 views: ~2x the classification time, +0.3 points on FER-2013) or
    ``ten`` (5 shifts x flip, 10x): the same views ``emotionlab evaluate --tta`` scores, averaged probabilities.
    """

    def __init__(self, model: str = "default", detector: str = "auto", device: str = "cpu", backend: str = "auto",
                 threads: int | None = None, min_detection_score: float | None = None,
                 attributes=("emotion",), gender_model: str = "gender", tta: str = "none"):
        from ..models.hub import load_model

        if tta not in TTA_MODES:
            raise ValueError(f"unknown tta {tta!r}; use one of {', '.join(TTA_MODES)}")
        self.tta = tta
        self.attributes = parse_attributes(attributes)
        self.loaded = load_model(model, device)
        self.device = device
        self.labels: list[str] = self.loaded.labels
        self.model_name: str = self.loaded.name
        self.pre = self.loaded.preprocess
        self.threads = threads
        kw = {"threads": threads}
        if min_detection_score is not None:
            kw["min_score"] = min_detection_score
        self.detector = create_detector(detector, **kw) if detector != "haar" else create_detector("haar")
        self.detector_name = detector
        self.crop_pre = crop_pre(self.pre, self.detector.crop_expand)  # 'none': the image is the crop
        self.backend = self._init_backend(backend)
        self.gender = (AttributeClassifier(gender_model, device, backend, threads)
                       if "gender" in self.attributes else None)

    # -- classification ---------------------------------------------------------------------------------
    def _init_backend(self, backend: str) -> str:
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"unknown backend {backend!r}; use auto, onnx or torch")
        self._sess = None
        if backend == "torch" or (backend == "auto" and str(self.device) != "cpu"):
            return "torch"
        try:
            import onnxruntime as ort

            from .onnx_export import cached_model_onnx

            path = cached_model_onnx(self.loaded)
            so = ort.SessionOptions()
            so.intra_op_num_threads = int(self.threads or 1)
            so.inter_op_num_threads = 1
            self._sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            self._in_name = self._sess.get_inputs()[0].name
            return "onnxruntime"
        except Exception as e:
            if backend == "onnx":
                raise RuntimeError(f"ONNX Runtime backend failed for {self.model_name}: {e}") from e
            self.backend_error = str(e)
            return "torch"

    def classify(self, model_input: np.ndarray) -> np.ndarray:
        """(N,1,S,S) normalized float32 -> (N, classes) probabilities, in one model call (TTA views included)."""
        if len(model_input) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        if self.tta != "none":
            import torch

            from ..training.engine import tta_views

            views = tta_views(torch.from_numpy(np.ascontiguousarray(model_input, np.float32)), self.tta)
            probs = self._classify_once(torch.cat(views).numpy())
            return probs.reshape(len(views), len(model_input), -1).mean(0).astype(np.float32)
        return self._classify_once(model_input)

    def _classify_once(self, model_input: np.ndarray) -> np.ndarray:
        if self._sess is not None:
            logits = self._sess.run(None, {self._in_name: np.ascontiguousarray(model_input, np.float32)})[0]
        else:
            import torch

            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(model_input, np.float32)).to(self.device)
                logits = self.loaded.model(x).float().cpu().numpy()
        return _softmax(logits.astype(np.float64)).astype(np.float32)

    def classify_crops(self, crops_u8: np.ndarray) -> np.ndarray:
        """Already-cropped uint8 faces (N,H,W) -> probabilities (used by the benchmark and the server)."""
        from ..data.preprocess import prepare_crops

        return self.classify(prepare_crops(crops_u8, self.pre))

    # -- detection + classification ---------------------------------------------------------------------
    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        return self.detector.detect(image_bgr)

    def _faces(self, dets: list[Detection], probs: np.ndarray, crops: np.ndarray) -> list[Face]:
        faces = []
        for d, p, c in zip(dets, probs, crops):
            scores = {lab: float(v) for lab, v in zip(self.labels, p)}
            x, y, w, h = d.box
            faces.append(Face(box=(round(x), round(y), round(w), round(h)),
                              label=self.labels[int(np.argmax(p))], scores=scores, landmarks=d.landmarks,
                              detection_score=d.score, crop=c))
        return faces

    def predict_images(self, images_bgr: list[np.ndarray]) -> list[list[Face]]:
        """Detect in each image, then classify every face of every image in one batched call."""
        dets = [self.detect(img) for img in images_bgr]
        inputs, crops, counts = [], [], []
        for img, ds in zip(images_bgr, dets):
            x, c = prepare_faces(img, [d.box for d in ds], self.crop_pre)
            inputs.append(x)
            crops.append(c)
            counts.append(len(ds))
        probs = self.classify(np.concatenate(inputs)) if inputs else np.zeros((0, len(self.labels)))
        out, i = [], 0
        for ds, c, n in zip(dets, crops, counts):
            out.append(self._faces(ds, probs[i:i + n], c))
            i += n
        if self.gender is not None:  # same crop settings (the usual case): reuse the emotion model's input
            same = self.gender.pre == self.pre and inputs
            gp = (self.gender.classify(np.concatenate(inputs)) if same
                  else self.gender.predict(images_bgr, dets, self.detector.crop_expand))
            labs = self.gender.labels
            for f, p in zip((f for faces in out for f in faces), gp):
                f.gender = {"label": labs[int(np.argmax(p))], "scores": {k: float(v) for k, v in zip(labs, p)}}
        return out

    def predict(self, image_or_path) -> list[Face]:
        """Faces in one image (path or BGR / gray / BGRA array); no face gives an empty list."""
        return self.predict_images([load_image(image_or_path)])[0]

    def predict_batch(self, items) -> list[list[Face]]:
        """Faces in several images, all faces classified in one batch; a bad file raises ``DataError``."""
        return self.predict_images([load_image(it) for it in items])

    def stream(self, source, stride: int = 1, smoothing: float = 0.5, iou: float = 0.3,
               max_missed: int = 10) -> Iterator[FrameResult]:
        """Frames of a video file or camera index with tracked faces (stable ``face_id``, EMA-smoothed scores)."""
        from .tracking import FaceTracker
        from .video import iter_frames

        tracker = FaceTracker(iou=iou, max_missed=max_missed, smoothing=smoothing)
        for idx, t, frame in iter_frames(source, stride):
            faces = self.predict_images([frame])[0]
            tracker.update(faces)
            yield FrameResult(idx, t, frame, faces)

    def describe(self) -> str:
        card = self.loaded.card
        g = (f", gender model {self.gender.loaded.name} ({self.gender.backend})" if self.gender is not None else "")
        t = f", tta {self.tta}" if self.tta != "none" else ""
        return (f"model {self.model_name} ({card.get('arch')}, {len(self.labels)} classes, weights {self.loaded.weights})"
                f", detector {self.detector_name}, backend {self.backend}{t}{g}")


@dataclass
class FrameResult:
    index: int
    time: float
    frame: np.ndarray = field(repr=False)
    faces: list[Face]
