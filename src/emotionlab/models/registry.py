"""timm-style model registry: ``@register_model``, ``create_model(name, **kw)``, ``list_models(pattern)``."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable[..., nn.Module]
    default_size: int
    sizes: tuple[int, ...]
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(fn: Callable | None = None, *, default_size: int = 48, sizes: tuple[int, ...] = (),
                   description: str = ""):
    """Register a builder ``fn(num_classes, in_size, in_chans, **kw) -> nn.Module`` under its name."""

    def deco(f: Callable) -> Callable:
        name = f.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        doc = description or (f.__doc__ or "").strip().splitlines()[0] if (description or f.__doc__) else ""
        _REGISTRY[name] = ModelEntry(name, f, default_size, sizes or (default_size,), doc)
        return f

    return deco(fn) if fn is not None else deco


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, e.g. ``'*xception*'``."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        close = [n for n in _REGISTRY if name.lower() in n or n in name.lower()]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint or '.'} Known: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 7, in_size: int | None = None, in_chans: int = 1,
                 **kwargs) -> nn.Module:
    """Build a registered architecture (random weights; see ``emotionlab.models.hub`` for shipped ones)."""
    entry = get_entry(name)
    size = in_size or entry.default_size
    model = entry.fn(num_classes=num_classes, in_size=size, in_chans=in_chans, **kwargs)
    model.arch = name  # type: ignore[attr-defined]
    model.in_size = size  # type: ignore[attr-defined]
    model.in_chans = in_chans  # type: ignore[attr-defined]
    model.num_classes = num_classes  # type: ignore[attr-defined]
    model.arch_kwargs = dict(kwargs)  # type: ignore[attr-defined]
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_mflops(model: nn.Module, in_size: int, in_chans: int = 1) -> float:
    """Multiply-accumulates of one forward pass in millions (conv and linear layers)."""
    macs = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal macs
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        macs += out.numel() // out.shape[0] * k

    def lin_hook(m: nn.Linear, inp, out):
        nonlocal macs
        macs += m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, in_chans, in_size, in_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return macs / 1e6


def flush_subnormals(tensors: dict) -> int:
    """Set float values below the smallest normal number (|x| < 1.2e-38 in float32) to zero, in place; how many.

    Why: Adam with L2 decay drives dense weights that get no gradient into the subnormal range (half of the 100 px
    simple_cnn's weights after a few epochs), and x86 CPUs compute with subnormals ~20x slower in float32, in
    PyTorch and ONNX Runtime alike. To any prediction these values are zero. float16 tensors are left alone: the
    shipped float16 weights hold values under float16's normal range (< 6.1e-5) that are ordinary float32 numbers
    once loaded, and they are part of the model.
    """
    n = 0
    for t in tensors.values():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float16:
            # nonzero by bit pattern: in flush-to-zero mode (set by fit) `t != 0` reads a subnormal as zero
            bits = t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
            tiny = (t.abs() < torch.finfo(t.dtype).tiny) & (bits != 0) & (bits != torch.iinfo(bits.dtype).min)
            k = int(tiny.sum())
            if k:
                t.masked_fill_(tiny, 0.0)
                n += k
    return n
