"""Post-hoc logit bias for rare classes, chosen on validation and baked into the classifier.

A model trained on imbalanced labels can be right about a rare class's ranking yet never let it win the argmax
(FER+ contempt: ~1 % of the faces, never predicted). Adding a constant to that class's logit moves its decision
boundary without retraining (post-hoc logit adjustment, Menon et al. 2021); the constant is picked on the
validation split only, and written into the last layer's bias so every backend (PyTorch, ONNX, int8, serve)
runs the adjusted model with no extra code.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from sklearn.metrics import f1_score

from ..models.classifier import softmax, to_input, tta_views


def view_logits(model: nn.Module, images_u8: np.ndarray, pre, tta: str = "flip", batch_size: int = 256) -> np.ndarray:
    """Logits of every test-time view: (views, N, classes)."""
    model.eval()
    imgs = torch.as_tensor(np.asarray(images_u8))
    out = []
    with torch.no_grad():
        for i in range(0, len(imgs), batch_size):
            x = to_input(imgs[i:i + batch_size], pre)
            out.append(torch.stack([model(v).float() for v in tta_views(x, tta)]))
    return torch.cat(out, 1).numpy()


def _predict(logits: np.ndarray, bias: np.ndarray) -> np.ndarray:
    # the pipeline's TTA: mean of view probabilities; float64 so that near ties resolve as the sweep recorded them
    return softmax(logits + bias, axis=-1, dtype=np.float64).mean(0).argmax(1)


def _metric(pred: np.ndarray, y: np.ndarray, n_classes: int, metric: str) -> float:
    if metric == "accuracy":
        return float((pred == y).mean())
    return float(f1_score(y, pred, average="macro", labels=range(n_classes), zero_division=0))


def score(logits: np.ndarray, y: np.ndarray, bias: np.ndarray, metric: str) -> float:
    return _metric(_predict(logits, bias), y, logits.shape[-1], metric)


def tune_logit_bias(logits: np.ndarray, y: np.ndarray, classes: list[int], metric: str = "macro_f1",
                    grid: np.ndarray | None = None, rounds: int = 2) -> tuple[np.ndarray, list[dict]]:
    """Per-class additive logit biases for ``classes`` (others stay 0) maximizing ``metric`` on (logits, y).

    One class: a grid search. Several: coordinate ascent, ``rounds`` passes. Ties go to the smaller bias, so a
    class whose bias does not help keeps 0. Returns the bias vector and the sweep (one row per grid value)."""
    if metric not in ("macro_f1", "accuracy"):
        raise ValueError(f"unknown metric {metric!r}; use macro_f1 or accuracy")
    grid = (np.round(np.arange(-1.0, 3.0001, 0.1), 4) if grid is None else np.asarray(grid, np.float64)) + 0.0
    bias = np.zeros(logits.shape[-1])
    sweep: list[dict] = []
    for r in range(rounds if len(classes) > 1 else 1):
        for c in classes:
            rows = []
            for v in grid:
                b = bias.copy()
                b[c] = v
                pred = _predict(logits, b)  # once per grid value: the metric and the count share it
                rows.append({"round": r + 1, "class": int(c), "bias": float(v),
                             metric: _metric(pred, y, logits.shape[-1], metric), "predicted": int((pred == c).sum())})
            best = max(rows, key=lambda row: (row[metric], -abs(row["bias"])))
            bias[c] = best["bias"]
            sweep += rows
    return bias, sweep


def classifier_layer(model: nn.Module, num_classes: int) -> tuple[str, nn.Module]:
    """The last Linear / 1x1-conv layer with ``num_classes`` outputs and a bias: the one whose bias is the logits'.

    (mini-Xception ends in a conv + global average pooling, so a constant added there reaches the logits too.)"""
    found = None
    for name, m in model.named_modules():
        out = m.out_features if isinstance(m, nn.Linear) else m.out_channels if isinstance(m, nn.Conv2d) else None
        if out == num_classes and getattr(m, "bias", None) is not None:
            found = (name, m)
    if found is None:
        raise ValueError(f"{type(model).__name__}: no final Linear / Conv2d layer with {num_classes} outputs and a "
                         "bias to carry a logit bias")
    return found


def bake_logit_bias(model: nn.Module, bias: np.ndarray, probe: torch.Tensor) -> str:
    """Add ``bias`` to the classifier's bias in place; checks on ``probe`` that the logits moved by exactly it."""
    name, layer = classifier_layer(model, len(bias))
    model.eval()
    with torch.no_grad():
        before = model(probe).float()
        old = layer.bias.detach().clone()  # restored exactly on refusal (x + b - b need not equal x in float)
        layer.bias += torch.as_tensor(bias, dtype=layer.bias.dtype)
        after = model(probe).float()
    if not torch.allclose(after - before, torch.as_tensor(bias, dtype=torch.float32).expand_as(before), atol=1e-4):
        with torch.no_grad():
            layer.bias.copy_(old)
        raise ValueError(f"{name}: adding to its bias did not shift the logits by the bias (a later layer mixes "
                         "them); not baked")
    return name
