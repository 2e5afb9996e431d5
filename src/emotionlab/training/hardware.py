"""Where a run computes: the device, bf16 autocast (measured, not guessed) and the hardware string of a card."""
from __future__ import annotations

import contextlib
import math
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one (``--device`` is checked by ``models.device.resolve_device`` first)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def hardware_string(device: torch.device) -> str:
    """What the card records as the run's hardware: the GPU's name, or the CPU and its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def autocast_ctx(device: torch.device, enabled: bool):
    """bf16 autocast on the device when enabled, else a no-op context (one code path for both)."""
    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16)


def choose_bf16(model: nn.Module, x: torch.Tensor, num_classes: int, device: torch.device,
                rounds: int = 3, margin: float = 1.1) -> tuple[bool, dict]:
    """``bf16: auto``: bf16 autocast if it trains ``model`` at least ``margin`` x faster than fp32 here.

    Why: the same recipe runs on CPUs where bf16 autocast is 1.6-1.9x faster (AMX: Sapphire Rapids and later) and
    on CPUs where it is slower (AVX2; AVX-512 without AMX), so only a measurement on this machine can decide.
    Times one SGD step per mode, alternating, on a copy of the model and one batch ``x`` of real inputs; the
    global RNG and the model are left untouched. On CUDA: bf16 when the GPU supports it, no timing.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported()), {}
    import copy

    probe = copy.deepcopy(model).train()
    opt = torch.optim.SGD(probe.parameters(), lr=1e-6)
    y = torch.arange(len(x), device=x.device) % num_classes
    best = {False: math.inf, True: math.inf}
    with torch.random.fork_rng(devices=[]):
        for r in range(rounds + 1):  # round 0 warms both paths up (oneDNN primitive creation)
            for mode in (False, True):
                t = time.perf_counter()
                with autocast_ctx(device, mode):
                    loss = F.cross_entropy(probe(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if r:
                    best[mode] = min(best[mode], time.perf_counter() - t)
    speed = {"fp32_img_s": len(x) / best[False], "bf16_img_s": len(x) / best[True]}
    return best[False] / best[True] >= margin, speed
