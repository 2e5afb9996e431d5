"""Face model -> class probabilities: the one path under every surface.

Emotion and gender in the recognizer, ``evaluate``, calibration, explanations, fairness, the service, batch
jobs and ``bench`` all turn face crops into probabilities here, so a model scores exactly as it is served:
the same normalization (``to_input``), the same test-time views (``tta_views``), the same softmax, and the same
backend choice (ONNX Runtime on CPU, the shipped int8 graph where the card names one, PyTorch on a GPU or as
the fallback). It lives in the models layer so that training, explain and inference import it, never each other.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.preprocess import PreprocessConfig
from .calibration import temperature_of
from .hub import LoadedModel
from .onnx import ort_session

__all__ = ["TTA_MODES", "BACKENDS", "FaceClassifier", "ort_session", "softmax", "to_input", "tta_views"]

#: test-time augmentation: the original only, + its mirror (2 views), or 5 shifts x mirror (10 views)
TTA_MODES = ("none", "flip", "ten")
N_VIEWS = {"none": 1, "flip": 2, "ten": 10}
BACKENDS = ("auto", "onnx", "torch")


def to_input(u8: torch.Tensor, pre: PreprocessConfig, channels_last: bool = False) -> torch.Tensor:
    """uint8 faces (N,S,S) -> normalized float32 model input (N,1,S,S), on the faces' device."""
    x = u8.float().unsqueeze(1).mul_(1.0 / 255.0).sub_(pre.mean).mul_(1.0 / pre.std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """Test-time views: 'flip' (2 views) or 'ten' (5 shifts x flip)."""
    if mode in ("", "none", None, False):
        return [x]
    views = [x, x.flip(-1)]
    if mode == "ten":
        n, c, h, w = x.shape
        for dx, dy in ((-2, -2), (2, -2), (-2, 2), (2, 2)):
            theta = torch.tensor([[1.0, 0, 2 * dx / w], [0, 1.0, 2 * dy / h]], dtype=x.dtype).expand(n, 2, 3)
            grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
            v = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
            views += [v, v.flip(-1)]
    return views


def softmax(z, axis: int = -1, dtype=np.float32) -> np.ndarray:
    """Softmax along ``axis``, computed in float64 after subtracting the max (no overflow on huge logits, no
    0/0 on very negative ones), returned as ``dtype``."""
    z = np.asarray(z, np.float64)
    z = z - z.max(axis, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis, keepdims=True)).astype(dtype, copy=False)


class FaceClassifier:
    """Class probabilities of one face model (a shipped name, alias, run directory or a loaded ``LoadedModel``).

    ``backend``: ``auto`` (ONNX Runtime on CPU, falling back to PyTorch with the reason in ``backend_error``;
    PyTorch on a GPU), ``onnx`` or ``torch``. ONNX Runtime runs ``cached_model_onnx``: the shipped int8 graph
    where the card names one, else the float graph exported from the weights; PyTorch runs the float weights.
    ``threads``: ONNX Runtime intra-op threads (None or 0: 1, a server worker's share, as the recognizer always
    did; ``ort_session`` itself reads 0 as one per core). ``tta``:
    ``none``, ``flip`` or ``ten``; the probabilities of the views are averaged. ``calibrated``: divide the
    logits by the card's fitted temperature (``models.calibration``; 1.0 when the card has none) — off only to
    fit one.
    """

    def __init__(self, loaded_or_name: LoadedModel | str | os.PathLike, device: str | torch.device = "cpu",
                 backend: str = "auto", threads: int | None = None, tta: str = "none", *, bf16: bool = False,
                 calibrated: bool = True):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; use auto, onnx or torch")
        if tta not in TTA_MODES:
            raise ValueError(f"unknown tta {tta!r}; use one of {', '.join(TTA_MODES)}")
        if threads is not None and int(threads) < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        if isinstance(loaded_or_name, (str, os.PathLike)):
            from .hub import load_model

            loaded_or_name = load_model(loaded_or_name, device)
        self.loaded: LoadedModel = loaded_or_name
        self.temperature = temperature_of(self.loaded.card) if calibrated else 1.0
        self.labels: list[str] = self.loaded.labels
        self.preprocess: PreprocessConfig = self.loaded.preprocess
        self.device = device
        # PyTorch inputs go where the weights are (a model loaded elsewhere may already sit on a GPU)
        p = next(self.loaded.model.parameters(), None)
        self._torch_device = p.device if p is not None else torch.device(device)
        self.tta = tta
        self.bf16 = bool(bf16)  # autocast of the PyTorch backend (training-time validation may ask for it)
        self.threads = threads
        self.backend_error: str | None = None
        self._sess = None
        self.backend = "torch"
        if backend == "torch" or (backend == "auto" and str(device) != "cpu"):
            self.loaded.model.eval()
            return
        try:
            from .onnx import cached_model_onnx

            self._sess = ort_session(cached_model_onnx(self.loaded), int(threads or 1))
            self._in_name = self._sess.get_inputs()[0].name
            self.backend = "onnxruntime"
        except Exception as e:
            if backend == "onnx":
                raise RuntimeError(f"ONNX Runtime backend failed for {self.loaded.name}: {e}") from e
            self.backend_error = str(e)
            self.loaded.model.eval()

    @classmethod
    def from_module(cls, model: nn.Module, preprocess: PreprocessConfig, labels: list[str] | None = None,
                    device: str | torch.device | None = None, tta: str = "none", bf16: bool = False
                    ) -> FaceClassifier:
        """PyTorch classifier of a bare module (a model being trained: no card, no ONNX graph yet)."""
        from pathlib import Path

        n = len(labels) if labels is not None else int(getattr(model, "num_classes", None) or 7)
        card = {"name": type(model).__name__, "labels": list(labels) if labels is not None else
                [str(i) for i in range(n)], "num_classes": n, "preprocess": preprocess.to_dict()}
        if device is None:
            p = next(model.parameters(), None)
            device = p.device if p is not None else "cpu"
        return cls(LoadedModel(model, card, Path(f"<{card['name']}>")), device, "torch", tta=tta, bf16=bf16)

    @property
    def name(self) -> str:
        return self.loaded.name

    def _logits(self, x: torch.Tensor) -> np.ndarray:
        """One model call on a normalized batch -> logits as a float32 numpy array."""
        if self._sess is not None:
            arr = np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)
            return self._sess.run(None, {self._in_name: arr})[0]
        model = self.loaded.model
        with torch.inference_mode():
            x = x.to(self._torch_device)
            if self.bf16:
                with torch.autocast(self._torch_device.type, dtype=torch.bfloat16):
                    out = model(x)
            else:
                out = model(x)
            return out.float().cpu().numpy()

    def _probs(self, x: torch.Tensor) -> np.ndarray:
        n = len(x)
        if n == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        views = tta_views(x, self.tta)
        z = self._logits(torch.cat(views) if len(views) > 1 else x)
        p = softmax(z if self.temperature == 1.0 else np.asarray(z, np.float64) / self.temperature, axis=1)
        return p if len(views) == 1 else p.reshape(len(views), n, -1).mean(0).astype(np.float32)

    def probs(self, model_input: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N,1,S,S) normalized float32 input -> (N, classes) float32 probabilities: all TTA views in one
        model call, their probabilities averaged."""
        if isinstance(model_input, torch.Tensor):
            return self._probs(model_input.float())
        return self._probs(torch.from_numpy(np.ascontiguousarray(model_input, np.float32)))

    def predict_proba(self, images_u8: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """uint8 face crops (N,S,S) already at the model's size -> (N, classes) probabilities.

        Each model call sees at most ``batch_size`` inputs, TTA views included (``ten`` at 256: 25 faces x 10
        views), so a dataset-sized call keeps the memory of a ``batch_size`` batch (2560 inputs in one call
        took ~2-3 GB)."""
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        step = max(1, int(batch_size) // N_VIEWS[self.tta])
        imgs = images_u8 if isinstance(images_u8, torch.Tensor) else torch.as_tensor(np.asarray(images_u8))
        dev = self._torch_device if self._sess is None else "cpu"
        out = [self._probs(to_input(imgs[i:i + step].to(dev), self.preprocess))
               for i in range(0, len(imgs), step)]
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)
