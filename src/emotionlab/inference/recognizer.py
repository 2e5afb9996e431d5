"""``FaceEmotionRecognizer``: detect faces, crop them with the one preprocessing path, classify them in one batch.

All faces of an image (and all images given to :meth:`predict_batch`) go through the classifier in a single
call. ONNX Runtime is the default CPU backend (the model is exported once to the cache, keyed by its weights'
hash); PyTorch is the fallback and the GPU path.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..data.decode import DecodeLimits
from ..data.errors import DataError
from ..data.preprocess import eye_roll, prepare_faces, to_uint8
from ..models.classifier import TTA_MODES, FaceClassifier  # noqa: F401  (TTA_MODES: re-exported)
from .cancel import checkpoint
from .detectors import Detection, create_detector


UNCERTAIN = "uncertain"  # the label of a face whose top calibrated score is below ``min_confidence``


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
        """The score of ``label``; for ``uncertain`` (below ``min_confidence``), the top score."""
        return float(self.scores[self.label] if self.label in self.scores else max(self.scores.values()))

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


def load_image(image_or_path, name: str | None = None, limits: DecodeLimits | None = None) -> np.ndarray:
    """A path (EXIF honoured), encoded bytes (``name`` names them in errors; Spark's ``binaryFile`` content) or
    an array -> 8-bit BGR, through the decode guard (``limits``, default :meth:`DecodeLimits.local`): a
    missing, empty, corrupt, oversized or absurdly shaped input raises a ``DataError`` that names it."""
    from ..data.decode import check_shape, decode_image, read_image_file

    limits = limits or DecodeLimits.local()
    if isinstance(image_or_path, (bytes, bytearray, memoryview)):
        return decode_image(image_or_path, name or "<bytes>", limits)
    if isinstance(image_or_path, (str, os.PathLike)):
        return read_image_file(image_or_path, limits)
    arr = np.asarray(image_or_path)
    if arr.ndim < 2:
        raise ValueError(f"{name or 'image'}: array of shape {arr.shape} is not an image")
    check_shape(int(arr.shape[1]), int(arr.shape[0]), name or "image", limits)
    return to_bgr8(arr)


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


def check_min_confidence(p: float | None) -> float:
    """``min_confidence`` as a float in [0, 1) (None: 0, never uncertain); anything else is a ValueError."""
    if p is None:
        return 0.0
    try:
        v = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"min_confidence must be a number in [0, 1), got {p!r}") from None
    if not 0.0 <= v < 1.0:  # NaN fails too
        raise ValueError(f"min_confidence must be a number in [0, 1), got {p!r}")
    return v


def label_of(scores: dict[str, float], min_confidence: float = 0.0) -> str:
    """The top class of ``scores``, or ``uncertain`` when its score is below ``min_confidence``: how the
    recognizer labels a face, for surfaces that relabel per request (the server's ``min_confidence``)."""
    top = max(scores, key=scores.__getitem__)
    return UNCERTAIN if float(scores[top]) < min_confidence else top


def crop_pre(pre, crop_expand: float | None):
    """The model's preprocessing, with the detector's own crop expansion where it has one (``none``: 1.0)."""
    from dataclasses import replace

    return pre if crop_expand is None else replace(pre, expand=crop_expand, shift_y=0.0)


class AttributeClassifier(FaceClassifier):
    """A second face classifier (apparent gender) on the same detector boxes, cut with its own model card's
    preprocessing, so it keeps working whatever the emotion model's input size or architecture is."""

    def __init__(self, model: str, device: str = "cpu", backend: str = "auto", threads: int | None = None):
        super().__init__(model, device, backend, threads)
        self.pre = self.preprocess

    def classify(self, model_input: np.ndarray) -> np.ndarray:
        """(N,1,S,S) normalized float32 -> (N, classes) probabilities."""
        return self.probs(model_input)

    def predict(self, images_bgr: list[np.ndarray], dets: list, crop_expand: float | None = None,
                rolls: list | None = None) -> np.ndarray:
        """Probabilities for every face of every image, in one batched call (``rolls``: per image, as
        :meth:`FaceEmotionRecognizer.rolls` gives them)."""
        pre = crop_pre(self.pre, crop_expand)
        rolls = rolls or [None] * len(dets)
        inputs = [prepare_faces(img, [d.box for d in ds], pre, r)[0] for img, ds, r in zip(images_bgr, dets, rolls)]
        return self.classify(np.concatenate(inputs)) if inputs else np.zeros((0, len(self.labels)), np.float32)



class FaceEmotionRecognizer:
    """Faces and emotions in images, folders and video.

    ``model``: shipped name, alias or run directory (``emotionlab.models.hub.load_model``); ``detector``: one of
    ``emotionlab.inference.detectors.list_detectors()``; ``backend``: ``auto`` (ONNX Runtime on CPU, PyTorch
    on GPU), ``onnx`` or ``torch``. ``attributes``: ``("emotion",)`` (default) or ``("emotion", "gender")``
    to add each face's apparent binary gender (``Face.gender`` = ``{label, scores}``) from ``gender_model``
    (a separate small model: see its model card for what it can and cannot tell, and its license).
    ``tta``: ``none`` (default), ``flip`` (2 views: ~2x the classification time, +0.3 points on FER-2013) or
    ``ten`` (5 shifts x flip, 10x): the same views ``emotionlab evaluate --tta`` scores, averaged probabilities.
    ``align``: turn each crop with the head's roll, measured from the detector's eye keypoints (BlazeFace;
    detectors without keypoints crop as usual); see docs/results_robustness.md for when it pays.
    ``min_confidence``: a face whose top (calibrated, see the model card's temperature) score is below it is
    labelled ``uncertain``; its scores are kept. None or 0: always the top class.
    """

    def __init__(self, model: str = "default", detector: str = "auto", device: str = "cpu", backend: str = "auto",
                 threads: int | None = None, min_detection_score: float | None = None,
                 attributes=("emotion",), gender_model: str = "gender", tta: str = "none", align: bool = False,
                 min_confidence: float | None = None):
        from ..models.device import resolve_device
        from ..models.hub import load_model

        if tta not in TTA_MODES:
            raise ValueError(f"unknown tta {tta!r}; use one of {', '.join(TTA_MODES)}")
        if min_detection_score is not None and not 0.0 <= float(min_detection_score) <= 1.0:
            raise ValueError(f"min_detection_score must be in [0, 1], got {min_detection_score}")
        device = resolve_device(device)  # "nope" / "cuda" without a GPU: one clear error, before any loading
        self.tta = tta
        self.align = bool(align)
        self.min_confidence = check_min_confidence(min_confidence)
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
        """The model -> probabilities core (``models.classifier.FaceClassifier``) on this model and device."""
        self.classifier = FaceClassifier(self.loaded, self.device, backend, self.threads, self.tta)
        if self.classifier.backend_error is not None:
            self.backend_error = self.classifier.backend_error
        return self.classifier.backend

    def classify(self, model_input: np.ndarray) -> np.ndarray:
        """(N,1,S,S) normalized float32 -> (N, classes) probabilities, in one model call (TTA views included)."""
        return self.classifier.probs(model_input)

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
            top = int(np.argmax(p))
            label = UNCERTAIN if float(p[top]) < self.min_confidence else self.labels[top]
            faces.append(Face(box=(round(x), round(y), round(w), round(h)), label=label, scores=scores,
                              landmarks=d.landmarks, detection_score=d.score, crop=c))
        return faces

    def rolls(self, dets: list[Detection]) -> list[float] | None:
        """Each detection's head roll for the crop when ``align`` is on (else None: upright crops)."""
        return [eye_roll(d.landmarks) for d in dets] if self.align else None

    def predict_images(self, images_bgr: list[np.ndarray]) -> list[list[Face]]:
        """Detect in each image, then classify every face of every image in one batched call."""
        dets = []
        for img in images_bgr:  # each detection is bounded (tile cap); a cancelled request stops between them
            checkpoint()
            dets.append(self.detect(img))
        checkpoint()
        inputs, crops, counts = [], [], []
        for img, ds in zip(images_bgr, dets):
            x, c = prepare_faces(img, [d.box for d in ds], self.crop_pre, self.rolls(ds))
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
                  else self.gender.predict(images_bgr, dets, self.detector.crop_expand,
                                           [self.rolls(ds) for ds in dets]))
            labs = self.gender.labels
            for f, p in zip((f for faces in out for f in faces), gp):
                f.gender = {"label": labs[int(np.argmax(p))], "scores": {k: float(v) for k, v in zip(labs, p)}}
        return out

    def predict(self, image_or_path, limits: DecodeLimits | None = None) -> list[Face]:
        """Faces in one image (path, encoded bytes or BGR / gray / BGRA array); no face gives an empty list.
        Decoding goes through the guard (``limits``, default :meth:`DecodeLimits.local`)."""
        return self.predict_images([load_image(image_or_path, limits=limits)])[0]

    def predict_batch(self, items, limits: DecodeLimits | None = None) -> list[list[Face]]:
        """Faces in several images, all faces classified in one batch; a bad file raises ``DataError``."""
        return self.predict_images([load_image(it, limits=limits) for it in items])

    def predict_iter(self, items: Iterable, batch: int = 8, limits: DecodeLimits | None = None
                     ) -> Iterator[ItemResult]:
        """Stream any number of images: yields one :class:`ItemResult` per item, in input order, with its faces
        or its error (a bad item never stops the others).

        ``items``: paths, encoded bytes, arrays, or ``(name, any of those)`` pairs (a ``DataError`` in place of
        the data is reported as that item's error, in its place). Up to ``batch`` decoded
        images are held at a time and all their faces are classified in one call, so memory is bounded by
        ``batch`` x the pixel cap of ``limits`` (default :meth:`DecodeLimits.local`) however many items come.
        """
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
        limits = limits or DecodeLimits.local()
        pending: list[ItemResult] = []

        def flush() -> Iterator[ItemResult]:
            if pending:
                found = self.predict_images([r.image for r in pending])
                for r, faces in zip(pending, found):
                    r.faces = faces
                yield from pending
                pending.clear()

        for i, item in enumerate(items):
            checkpoint()
            name, obj = item if isinstance(item, tuple) and len(item) == 2 else (None, item)
            name = str(name) if name is not None else (str(obj) if isinstance(obj, (str, os.PathLike))
                                                       else f"item[{i}]")
            res = ItemResult(index=i, name=name)
            try:
                if isinstance(obj, DataError):  # refused upstream (e.g. a video in an image batch): keep its place
                    raise obj
                img = load_image(obj, name, limits)
            except DataError as e:
                res.error, res.detail = getattr(e, "error", "invalid_input"), str(e)
            except (ValueError, TypeError) as e:
                res.error, res.detail = "invalid_input", f"{name}: {e}"
            else:
                res.image, res.height, res.width = img, int(img.shape[0]), int(img.shape[1])
            if res.error is None:
                pending.append(res)
                if len(pending) >= batch:
                    yield from flush()
            else:
                yield from flush()  # the images before this one first: input order is kept
                yield res
        yield from flush()

    def stream(self, source, stride: int = 1, smoothing: float = 0.5, iou: float = 0.3,
               max_missed: int = 20, live=None, limits: DecodeLimits | None = None,
               on_event=None) -> Iterator[FrameResult]:
        """Frames with tracked faces (stable ``face_id``, EMA-smoothed scores) of a video file, a camera index,
        a network stream (``rtsp://``, ``http(s)://`` MJPEG / MPEG-TS / HLS, ``udp://``...) or a
        :class:`~emotionlab.inference.sources.LiveSource`.

        A file gives every ``stride``-th frame. A camera or stream is read live: the newest frame is processed
        and the backlog dropped (``FrameResult.dropped`` counts them), with the timeouts, reconnects and
        ``duration_s`` of ``live`` (:class:`~emotionlab.inference.sources.LiveOptions`). ``max_missed``: frames
        (processed ones) a face may go undetected and keep its id."""
        from .sources import LiveSource, is_live
        from .tracking import FaceTracker
        from .video import iter_frames

        tracker = FaceTracker(iou=iou, max_missed=max_missed, smoothing=smoothing)
        if isinstance(source, LiveSource):
            frames, own = source, False
        elif is_live(source):
            frames, own = LiveSource(source, live, limits, stride, on_event), True
        else:
            frames, own = iter_frames(source, stride, limits), False
        stats = getattr(frames, "stats", None)
        try:
            for idx, t, frame in frames:
                faces = self.predict_images([frame])[0]
                tracker.update(faces)
                yield FrameResult(idx, t, frame, faces, stats.frames_dropped if stats is not None else 0)
        finally:
            if own:
                frames.close()

    def describe(self) -> str:
        card = self.loaded.card
        g = (f", gender model {self.gender.loaded.name} ({self.gender.backend})" if self.gender is not None else "")
        t = f", tta {self.tta}" if self.tta != "none" else ""
        return (f"model {self.model_name} ({card.get('arch')}, {len(self.labels)} classes, weights {self.loaded.weights})"
                f", detector {self.detector_name}, backend {self.backend}{t}{g}")


@dataclass
class ItemResult:
    """One input of :meth:`FaceEmotionRecognizer.predict_iter`: its faces, or why it was refused."""

    index: int
    name: str
    faces: list[Face] | None = None
    error: str | None = None  # short machine name: image_too_large, image_shape, invalid_image, not_found...
    detail: str | None = None  # one sentence naming the input and what was wrong
    width: int | None = None
    height: int | None = None
    image: np.ndarray | None = field(default=None, repr=False)  # the decoded BGR image (drop it when done)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class FrameResult:
    index: int
    time: float
    frame: np.ndarray = field(repr=False)
    faces: list[Face]
    dropped: int = 0  # live sources: frames dropped so far because inference lagged
