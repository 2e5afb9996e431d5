"""Optimizer, learning-rate schedule, loss and weight EMA of a training run, built from its ``TrainConfig``."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import OPTIMIZERS, SCHEDULES, TrainConfig


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                       smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy against soft targets (FER+ votes, teachers), optionally class-weighted and smoothed."""
    if smoothing > 0:
        target = target * (1 - smoothing) + smoothing / target.shape[1]
    logp = F.log_softmax(logits.float(), dim=1)
    loss = -(target * logp)
    if weight is not None:
        loss = loss * weight
    return loss.sum(1).mean()


def loss_class_weights(counts: np.ndarray, power: float = 1.0) -> np.ndarray:
    """Per-class loss weights (inverse frequency) ** power, scaled to mean 1 so the learning rate keeps its meaning."""
    w = (counts.sum() / np.maximum(counts, 1) / len(counts)) ** power
    return w / w.mean()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No decay on norms and biases; per-layer L2 (``model.l2``) gets its own group."""
    l2 = getattr(model, "l2", {}) or {}
    decay, no_decay, special = [], [], {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name in l2:
            special.setdefault(l2[name], []).append(p)
        elif p.ndim <= 1:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups += [{"params": ps, "weight_decay": max(c, weight_decay)} for c, ps in special.items()]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use {', '.join(OPTIMIZERS)}")


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Returns (scheduler, unit): unit 'step' schedulers advance every batch, 'epoch' ones every epoch."""
    total = cfg.epochs * steps_per_epoch
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.time_budget and cfg.schedule not in ("cosine", "plateau", "none"):
        raise ValueError(f"time_budget needs schedule cosine, plateau or none (got {cfg.schedule!r}): the others "
                         "fix their steps when they are built")
    if cfg.schedule == "cosine":
        def f(step: int) -> float:
            if step < warm:
                return (step + 1) / max(1, warm)
            total = cfg.epochs * steps_per_epoch  # read each step: a time budget may re-plan the epochs
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
        return torch.optim.lr_scheduler.LambdaLR(opt, f), "step"
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                   pct_start=max(0.05, min(0.5, warm / max(1, total)))), "step"
    if cfg.schedule == "step":
        ms = cfg.milestones or [int(cfg.epochs * 0.5), int(cfg.epochs * 0.75)]
        return torch.optim.lr_scheduler.MultiStepLR(opt, ms, cfg.gamma), "epoch"
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=cfg.gamma if cfg.gamma < 1 else 0.5,
                                                          patience=cfg.plateau_patience), "plateau"
    if cfg.schedule == "none":
        return None, "none"
    raise ValueError(f"unknown schedule {cfg.schedule!r}; use {', '.join(SCHEDULES)}")


def make_ema(model: nn.Module, decay: float):
    """Weight EMA (timm's ModelEmaV2) as ``torch.optim.swa_utils.AveragedModel``; buffers (BN statistics) too.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, as TensorFlow's
    ExponentialMovingAverage with ``num_updates``: the first steps do not freeze the average at the init.
    """
    from torch.optim.swa_utils import AveragedModel

    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema_decay must be in (0, 1), got {decay}")

    def multi_avg_fn(avg: list[torch.Tensor], cur: list[torch.Tensor], n: torch.Tensor) -> None:
        # called once per device / dtype group and step (one host sync for n, not one per tensor on a GPU)
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        if torch.is_floating_point(avg[0]):
            torch._foreach_lerp_(avg, cur, 1.0 - d)
        else:  # integer buffers (BN's num_batches_tracked)
            for a, c in zip(avg, cur):
                a.copy_(a * d + c * (1.0 - d))

    ema = AveragedModel(model, multi_avg_fn=multi_avg_fn, use_buffers=True)
    ema.eval()
    return ema
