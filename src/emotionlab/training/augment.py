"""Batched augmentation on tensors, so it runs on the CPU or a GPU alike (no per-image Python loop).

Inputs are normalized float tensors (N, C, H, W); every transform draws its parameters per sample. Random numbers
come from a CPU generator (the same stream on any device) and cross to a GPU with ``non_blocking=True``: a
blocking copy would make the host wait for every queued kernel at each of them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    flip: float = 0.5  # probability of a horizontal flip
    rotate: float = 15.0  # max rotation in degrees
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.1  # max shift as a fraction of the side
    noise: float = 0.0  # std of additive Gaussian noise (in normalized units), applied with p=0.5
    erase: float = 0.0  # probability of random erasing (one rectangle, 2-25% of the area)
    occlude: float = 0.0  # probability of an occlusion mask (forehead / eyes / lower face)
    mixup: float = 0.0  # mixup alpha (0 = off)
    cutmix: float = 0.0  # probability of cutmix instead of mixup (needs mixup > 0 for its alpha)
    #: probability of one camera degradation per face: low resolution (16 / 24 / 32 px), Gaussian blur
    #: (sigma 0.8 / 1.5), or contrast x 0.35-1 with a brightness shift; what ``benchmarks/robustness.py`` tests
    degrade: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def affine(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    n = x.shape[0]
    dev = x.device
    rnd = lambda *s: torch.rand(*s, generator=gen, device="cpu").to(dev, non_blocking=True)  # noqa: E731
    ang = (rnd(n) * 2 - 1) * math.radians(cfg.rotate)
    sc = cfg.scale[0] + rnd(n) * (cfg.scale[1] - cfg.scale[0])
    tx = (rnd(n) * 2 - 1) * cfg.translate * 2  # affine_grid works in [-1, 1]
    ty = (rnd(n) * 2 - 1) * cfg.translate * 2
    flip = (rnd(n) < cfg.flip).float() * -2 + 1
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_erase(x: torch.Tensor, p: float, gen: torch.Generator | None = None) -> torch.Tensor:
    n, _, h, w = x.shape
    r = torch.rand(n, 4, generator=gen)
    area = 0.02 + r[:, 0] * 0.23
    aspect = torch.exp((r[:, 1] - 0.5) * 2 * math.log(3))
    eh = (torch.sqrt(area * aspect) * h).clamp(1, h).long()
    ew = (torch.sqrt(area / aspect) * w).clamp(1, w).long()
    y0 = (r[:, 2] * (h - eh + 1).float()).long()
    x0 = (r[:, 3] * (w - ew + 1).float()).long()
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    m = (ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1)) & (xs >= x0.view(-1, 1, 1)) & (
        xs < (x0 + ew).view(-1, 1, 1))
    m &= (torch.rand(n, generator=gen) < p).view(-1, 1, 1)
    return x.masked_fill(m.unsqueeze(1).to(x.device, non_blocking=True), 0.0)


def occlusion(x: torch.Tensor, p: float, fill: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Hide the forehead, eyes or lower face of a random subset (seed 004's masks).

    Half of the patches use ``fill`` (black, as ``evaluate --occlude`` applies them), half the mean grey (0 in
    normalized units), so a model trained with masks is not tied to one patch colour.
    """
    n, _, h, _ = x.shape
    which = torch.randint(0, 3, (n,), generator=gen)
    on = torch.rand(n, generator=gen) < p
    rows = torch.arange(h).view(1, h)
    lo = torch.tensor([0, h // 4, h // 2])[which].view(-1, 1)
    hi = torch.tensor([h // 4, h // 2, h])[which].view(-1, 1)
    m = (rows >= lo) & (rows < hi) & on.view(-1, 1)
    fills = torch.where(torch.rand(n, generator=gen) < 0.5, torch.tensor(float(fill)), torch.tensor(0.0))
    patch = fills.view(n, 1, 1, 1).to(x.device, x.dtype, non_blocking=True).expand_as(x)
    return torch.where(m.view(n, 1, h, 1).to(x.device, non_blocking=True), patch, x)


def _gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)


def degrade(x: torch.Tensor, p: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """One of six camera degradations for a random share ``p`` of the faces, computed batch-wide and selected
    per face (a few cheap convolutions next to the network): resolution 16 / 24 / 32 px and back, blur sigma
    0.8 / 1.5, or contrast x U(0.35, 1) around the face's mean plus a brightness shift of U(-0.4, 0.4) std."""
    n, _, h, w = x.shape
    which = torch.randint(0, 6, (n,), generator=gen)
    on = torch.rand(n, generator=gen) < p
    amt = torch.rand(n, 2, generator=gen)
    if not bool(on.any()):
        return x
    variants = []
    for side in (16, 24, 32):
        small = F.interpolate(x, size=(side, side), mode="area")
        variants.append(F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False))
    variants += [_gauss_blur(x, 0.8), _gauss_blur(x, 1.5)]
    c = (0.35 + 0.65 * amt[:, 0]).view(n, 1, 1, 1).to(x.device, x.dtype, non_blocking=True)
    b = ((amt[:, 1] * 2 - 1) * 0.4).view(n, 1, 1, 1).to(x.device, x.dtype, non_blocking=True)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    variants.append(mean + c * (x - mean) + b)
    out = x
    for i, v in enumerate(variants):
        sel = (on & (which == i)).view(n, 1, 1, 1).to(x.device, non_blocking=True)
        out = torch.where(sel, v, out)
    return out


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None,
                  occlusion_fill: float = 0.0) -> torch.Tensor:
    if cfg.rotate or cfg.translate or cfg.flip or cfg.scale != (1.0, 1.0):
        x = affine(x, cfg, gen)
    if cfg.degrade > 0:
        x = degrade(x, cfg.degrade, gen)
    if cfg.noise > 0:
        on = (torch.rand(x.shape[0], 1, 1, 1, generator=gen) < 0.5).to(x.device, x.dtype, non_blocking=True)
        x = x + on * torch.randn(x.shape, generator=gen).to(x.device, x.dtype, non_blocking=True) * cfg.noise
    if cfg.erase > 0:
        x = random_erase(x, cfg.erase, gen)
    if cfg.occlude > 0:
        x = occlusion(x, cfg.occlude, occlusion_fill, gen)
    return x


def mix_batch(x: torch.Tensor, y: torch.Tensor, cfg: AugmentConfig,
              gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix on a batch with soft targets ``y`` (N, C)."""
    if cfg.mixup <= 0:
        return x, y
    lam = float(torch.distributions.Beta(cfg.mixup, cfg.mixup).sample())
    perm = torch.randperm(x.shape[0], generator=gen).to(x.device, non_blocking=True)
    if torch.rand(1, generator=gen).item() < cfg.cutmix:
        _, _, h, w = x.shape
        cut = math.sqrt(1 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(torch.randint(0, h, (1,), generator=gen)), int(torch.randint(0, w, (1,), generator=gen))
        y0, y1 = max(0, cy - ch // 2), min(h, cy + ch // 2)
        x0, x1 = max(0, cx - cw // 2), min(w, cx + cw // 2)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = lam * x + (1 - lam) * x[perm]
    return x, lam * y + (1 - lam) * y[perm]
