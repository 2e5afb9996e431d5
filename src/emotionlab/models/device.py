"""Which compute device a name means, checked before any model is built.

``torch.device("nope")`` raises a long RuntimeError listing every device type torch knows, and ``"cuda"`` on a
machine without a GPU fails deep inside model loading with ``AssertionError: Torch not compiled with CUDA
enabled``. :func:`resolve_device` turns both into one clear ``ValueError`` that names the value given and the
devices usable here; every surface (CLI, Python API, server) can call it first.
"""
from __future__ import annotations

import re

DEVICE_FORMS = "cpu, cuda, cuda:N, mps or auto"
_NAME = re.compile(r"(cpu|cuda|mps)(?::(\d+))?")


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The device names usable on this machine: ``cpu``, then ``cuda:0`` ... and ``mps`` when present."""
    n = _cuda_count()
    return ["cpu"] + [f"cuda:{i}" for i in range(n)] + (["mps"] if _mps_available() else [])


def resolve_device(name: str, what: str = "device") -> str:
    """The canonical name of a usable device (``cpu``, ``cuda``, ``cuda:N``, ``mps``), or a ``ValueError``.

    ``auto`` means the first CUDA GPU when one is usable, else the CPU (as training's ``pick_device``).
    ``what`` names the setting in the message (a CLI passes ``"--device"``). ``cpu`` never imports torch.
    """
    s = str(name).strip().lower()
    if s == "cpu":
        return "cpu"
    if s == "auto":
        return "cuda" if _cuda_count() else "cpu"
    m = _NAME.fullmatch(s)
    if m is None:
        raise ValueError(f"{what} {name!r}: not a device; expected {DEVICE_FORMS} (usable here: "
                         f"{', '.join(available_devices())})")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu":
        return "cpu"  # cpu:0 is the CPU too
    if kind == "mps":
        if index not in (None, "0"):
            raise ValueError(f"{what} {name!r}: there is one MPS device; use mps")
        if not _mps_available():
            raise ValueError(f"{what} {name!r}: Apple MPS is not available here (usable here: "
                             f"{', '.join(available_devices())})")
        return "mps"
    n = _cuda_count()
    if n == 0:
        import torch

        why = (f"this PyTorch build ({torch.__version__}) has no CUDA support" if torch.version.cuda is None
               else "no CUDA GPU is visible")
        raise ValueError(f"{what} {name!r}: {why} (usable here: {', '.join(available_devices())})")
    if index is not None and int(index) >= n:
        raise ValueError(f"{what} {name!r}: there is no GPU {index}; {n} visible (usable here: "
                         f"{', '.join(available_devices())})")
    return s
