"""Gradient explanations for any face model in the registry: saliency, guided backprop and Grad-CAM.

Why one module with plain functions: every method needs the same three things (a differentiable class
score, the model put in eval mode and restored afterwards, a map rescaled to [0, 1] at the input size),
and the CLI, the dataset study and the tests all call the same ``explain`` entry point.

Every function takes a model input already normalized by ``emotionlab.data.preprocess`` (the one
preprocessing path): a tensor (C,H,W) for one face or (N,C,H,W) for a batch.
"""
from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("saliency", "guided-backprop", "gradcam")

HeadFn = Callable[[object], torch.Tensor]
Target = int | str | Sequence[int] | None


# ------------------------------------------------------------------------------------------- helpers
def default_head(output: object) -> torch.Tensor:
    """Model output -> logits (N, C). Multi-head models return a tuple / dict; the first head is used."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        for key in ("logits", "emotion", "expression"):
            if key in output:
                return output[key]
        return next(iter(output.values()))
    if isinstance(output, (tuple, list)) and output:
        return output[0]
    raise TypeError(f"cannot take logits from a model output of type {type(output).__name__}; pass head=")


def _as_batch(x: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
    t = torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x)
    if not t.is_floating_point():
        raise TypeError(f"explain expects a normalized float model input, got dtype {t.dtype}; "
                        "use emotionlab.data.preprocess.prepare_crops on uint8 faces first")
    if t.ndim == 3:
        return t.unsqueeze(0), True
    if t.ndim != 4:
        raise ValueError(f"model input has shape {tuple(t.shape)}, expected (C,H,W) or (N,C,H,W)")
    return t, False


def _resolve_target(target: Target, logits: torch.Tensor, labels: Sequence[str] | None) -> torch.Tensor:
    """Class index per sample: None = the predicted class; an int / label name = that class for all."""
    n, c = logits.shape
    if target is None:
        return logits.argmax(1)
    if isinstance(target, str):
        if labels is None or target not in labels:
            raise ValueError(f"unknown target class {target!r}; known: {', '.join(labels or [])}")
        target = list(labels).index(target)
    idx = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if idx.numel() == 1:
        idx = idx.expand(n)
    if idx.numel() != n:
        raise ValueError(f"{idx.numel()} targets given for a batch of {n} inputs")
    if (idx < 0).any() or (idx >= c).any():
        raise ValueError(f"target class index out of range: the model has {c} classes (0..{c - 1})")
    return idx.clone()


def normalize_map(m: torch.Tensor) -> torch.Tensor:
    """Per-sample rescale (N,H,W) to [0, 1] by the maximum; an all-zero map stays zero (never NaN)."""
    m = torch.nan_to_num(m.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)
    peak = m.flatten(1).amax(1).view(-1, 1, 1)
    return torch.where(peak > 0, m / peak.clamp_min(1e-12), torch.zeros_like(m))


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off and batch-norm statistics frozen, then the caller's mode restored."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _input_grad(model: nn.Module, x: torch.Tensor, target: Target, labels, head: HeadFn
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """d score[target] / d input for each sample -> (grad (N,C,H,W), target idx, probs)."""
    dev = next(model.parameters()).device
    xin = x.detach().to(dev, torch.float32).clone().requires_grad_(True)
    with torch.enable_grad():
        logits = head(model(xin))
        idx = _resolve_target(target, logits.detach(), labels).to(dev)
        score = logits.gather(1, idx.view(-1, 1)).sum()  # samples are independent in eval mode
        (grad,) = torch.autograd.grad(score, xin)
    return grad.detach(), idx, F.softmax(logits.detach().float(), 1)


# ------------------------------------------------------------------------------------------ saliency
def saliency(model: nn.Module, x: torch.Tensor, target: Target = None, labels=None,
             head: HeadFn = default_head) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Simonyan et al. 2014: |d class score / d pixel|, max over channels. -> (maps (N,H,W), pred, probs)."""
    x, _ = _as_batch(x)
    with _eval_mode(model):
        grad, _, probs = _input_grad(model, x, target, labels, head)
    return normalize_map(grad.abs().amax(1)), probs.argmax(1), probs


# ----------------------------------------------------------------------------------- guided backprop
class _GuidedReLUFn(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients at positive inputs (Springenberg et al. 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clamp_min(0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return grad * (out > 0).to(grad.dtype) * (grad > 0).to(grad.dtype)


class GuidedReLU(nn.Module):
    """Drop-in stand-in for ``nn.ReLU`` (in-place or not): never modifies its input, so the autograd graph
    stays valid where an in-place ReLU would break backward hooks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GuidedReLUFn.apply(x)


def _guided_relu_functional(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return _GuidedReLUFn.apply(x)


@contextlib.contextmanager
def guided_relus(model: nn.Module) -> Iterator[int]:
    """Temporarily swap every ``nn.ReLU`` module (and ``F.relu``) for the guided version; always restore.

    Swapping modules instead of registering backward hooks is deliberate: full backward hooks raise on
    modules whose output is modified in place, and every ReLU in the zoo is ``inplace=True``.
    Yields the number of ReLU modules swapped.
    """
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    original_relu = F.relu
    try:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.ReLU):
                    swapped.append((parent, name, child))
                    setattr(parent, name, GuidedReLU())
        F.relu = _guided_relu_functional  # models that call F.relu in forward()
        yield len(swapped)
    finally:
        F.relu = original_relu
        for parent, name, child in reversed(swapped):
            setattr(parent, name, child)


def guided_backprop(model: nn.Module, x: torch.Tensor, target: Target = None, labels=None,
                    head: HeadFn = default_head) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Guided backpropagation: input gradient with guided ReLUs, |.| max over channels, in [0, 1]."""
    x, _ = _as_batch(x)
    with _eval_mode(model), guided_relus(model):
        grad, _, probs = _input_grad(model, x, target, labels, head)
    return normalize_map(grad.abs().amax(1)), probs.argmax(1), probs


# -------------------------------------------------------------------------------------------- gradcam
def find_gradcam_layer(model: nn.Module, x: torch.Tensor, min_side: int = 3) -> nn.Module:
    """The last feature map of the network: the module (in execution order) that finishes last among
    those whose output is a 4-D map at least ``min_side`` x ``min_side``.

    This is the block output, not the last ``nn.Conv2d``: in residual nets the last conv that runs may be a
    shortcut projection (EmoNet) or a squeeze-excitation 1x1 conv on a 1x1 map, both poor choices.
    Falls back to the largest-spatial last map when nothing reaches ``min_side`` (tiny inputs).
    """
    x, _ = _as_batch(x)
    finished: list[tuple[nn.Module, int]] = []
    hooks = []

    def hook(mod, _inp, out):
        if isinstance(out, torch.Tensor) and out.ndim == 4:
            finished.append((mod, min(out.shape[-2:])))

    for m in model.modules():
        if m is not model:
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad(), _eval_mode(model):
            model(x[:1].to(next(model.parameters()).device, torch.float32))
    finally:
        for h in hooks:
            h.remove()
    if not finished:
        raise ValueError(f"{type(model).__name__} produces no 4-D feature map; Grad-CAM needs a conv network")
    good = [m for m, side in finished if side >= min_side]
    if good:
        return good[-1]
    best = max(side for _, side in finished)
    return [m for m, side in finished if side == best][-1]


_LAYER_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _default_layer(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """``find_gradcam_layer`` once per model and input shape (it costs a forward pass)."""
    key = tuple(x.shape[1:])
    per_model = _LAYER_CACHE.setdefault(model, {})
    layer = per_model.get(key)
    if layer is None or not any(m is layer for m in model.modules()):
        layer = per_model[key] = find_gradcam_layer(model, x)
    return layer


def _get_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    if isinstance(layer, nn.Module):
        return layer
    mods = dict(model.named_modules())
    if layer not in mods:
        convs = [n for n, m in mods.items() if isinstance(m, nn.Conv2d)][-5:]
        raise ValueError(f"no layer {layer!r} in {type(model).__name__}; e.g. {', '.join(convs)}")
    return mods[layer]


def gradcam(model: nn.Module, x: torch.Tensor, target: Target = None, labels=None, head: HeadFn = default_head,
            target_layer: nn.Module | str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Selvaraju et al. 2017: ReLU(sum_k mean(dS/dA_k) A_k) on the last feature map, upsampled to the input.

    An ensemble (``ProbEnsemble``) is explained on the last feature map of every member: each map's
    weighted sum uses the gradient of the ensemble's own score, so a member counts as much as it moves that
    score, and the upsampled sums are added before the ReLU.
    """
    x, _ = _as_batch(x)
    if target_layer is not None:
        layers = [_get_layer(model, target_layer)]
    elif hasattr(model, "members"):
        layers = [_default_layer(m, x) for m in model.members]
    else:
        layers = [_default_layer(model, x)]
    acts: list[torch.Tensor | None] = [None] * len(layers)

    def make_hook(i: int):
        def fwd_hook(_mod, _inp, out):
            acts[i] = default_head(out)
            # The activation itself is kept in the graph: autograd.grad below asks for d score / d act.
        return fwd_hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers)]
    dev = next(model.parameters()).device
    try:
        with _eval_mode(model), torch.enable_grad():
            xin = x.detach().to(dev, torch.float32).requires_grad_(True)  # keeps a graph even if all frozen
            logits = head(model(xin))
            idx = _resolve_target(target, logits.detach(), labels).to(dev)
            score = logits.gather(1, idx.view(-1, 1)).sum()
            missing = [type(layers[i]).__name__ for i, a in enumerate(acts) if a is None]
            if missing:
                raise ValueError(f"Grad-CAM layer {missing[0]} did not run in the forward pass")
            grads = torch.autograd.grad(score, acts)
    finally:
        for h in handles:
            h.remove()
    maps = [(grad.mean((2, 3), keepdim=True) * act.detach()).sum(1, keepdim=True) for act, grad in zip(acts, grads)]
    if len({m.shape for m in maps}) > 1:  # members with maps of different sizes meet at the input's size
        maps = [F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False) for m in maps]
    cam = F.relu(torch.stack(maps).sum(0))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    probs = F.softmax(logits.detach().float(), 1)
    return normalize_map(cam), probs.argmax(1), probs


# ------------------------------------------------------------------------------------------ public API
_FNS = {"saliency": saliency, "guided-backprop": guided_backprop, "guided_backprop": guided_backprop,
        "gradcam": gradcam, "grad-cam": gradcam}


def explain(model: nn.Module, x: torch.Tensor | np.ndarray, method: str = "gradcam", target: Target = None,
            labels: Sequence[str] | None = None, head: HeadFn = default_head, **kwargs):
    """One entry point for every method -> ``(map, predicted_index, probs)`` as numpy.

    ``x`` (C,H,W) gives a (H,W) float32 map in [0, 1], an int and (num_classes,) probabilities;
    ``x`` (N,C,H,W) gives (N,H,W), (N,) and (N,num_classes). ``target`` is None (explain the predicted
    class), a class index, a label name (with ``labels``) or one index per sample. ``head`` maps the
    model output to logits (multi-head models); ``target_layer`` (Grad-CAM) picks the feature map.
    """
    fn = _FNS.get(method.lower())
    if fn is None:
        raise ValueError(f"unknown explanation method {method!r}; use one of {', '.join(METHODS)}")
    _, single = _as_batch(x)
    maps, pred, probs = fn(model, x, target=target, labels=labels, head=head, **kwargs)
    maps, pred, probs = maps.cpu().numpy().astype(np.float32), pred.cpu().numpy(), probs.cpu().numpy()
    if single:
        return maps[0], int(pred[0]), probs[0]
    return maps, pred, probs


def overlay(crop_u8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45,
            colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Heat map over a face crop -> BGR uint8 image at the crop's size (OpenCV colormap)."""
    from ..data.preprocess import to_gray

    gray = to_gray(crop_u8)
    hm = np.nan_to_num(np.asarray(heatmap, np.float32), nan=0.0)
    if hm.ndim != 2:
        raise ValueError(f"heat map has shape {hm.shape}, expected (H,W)")
    if hm.shape != gray.shape:
        hm = cv2.resize(hm, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR)
    color = cv2.applyColorMap((np.clip(hm, 0, 1) * 255).astype(np.uint8), colormap)
    base = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(color, alpha, base, 1 - alpha, 0)
