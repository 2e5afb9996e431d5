"""Training targets: one-hot labels, FER+ vote distributions and teachers' probabilities (distillation)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..models.classifier import FaceClassifier, softmax
from .config import TrainConfig


def targets(ds, num_classes: int, cfg: TrainConfig, teacher: np.ndarray | None = None) -> torch.Tensor:
    """The training targets: one-hot labels, mixed with the FER+ vote shares and the teachers' probabilities
    by their configured weights (soft targets carry the annotators' and teachers' uncertainty)."""
    t = np.eye(num_classes, dtype=np.float32)[ds.labels]
    if ds.soft is not None and cfg.ferplus_weight > 0:
        w = cfg.ferplus_weight
        t = w * ds.soft + (1 - w) * t
    if teacher is not None and cfg.distill_weight > 0:
        t = cfg.distill_weight * teacher + (1 - cfg.distill_weight) * t
    return torch.from_numpy(t.astype(np.float32))


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): for one view exactly the teacher's softmax(logits / T)."""
    if temperature == 1.0:
        return probs
    logp = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    return softmax(logp, axis=1, dtype=logp.dtype)


def teacher_targets(cfg: TrainConfig, train, labels: list[str], in_size: int, device, out: Path,
                    console=None) -> np.ndarray | None:
    """Mean TTA probabilities (``cfg.teacher_tta``) of ``cfg.teachers`` on the training faces, cached in ``out``.

    Computed once before the first epoch on the clean faces (not per augmented batch): on a CPU an online
    teacher would cost several student steps per step. The cache is keyed by teachers, views and faces, so
    ``--resume`` reuses it and a changed teacher list or view set recomputes it.
    """
    if not cfg.teachers or cfg.distill_weight <= 0:
        return None
    import hashlib

    from ..models.hub import load_model, resolve

    key = hashlib.sha256()
    for t in cfg.teachers:
        w, _ = resolve(t)
        key.update(f"{t}|{w.stat().st_size}|{w.stat().st_mtime_ns}|".encode())
    if cfg.teacher_tta != "flip":  # flip keeps the key it had before teacher_tta existed (old caches stay valid)
        key.update(f"tta={cfg.teacher_tta}|".encode())
    key.update(np.ascontiguousarray(train.images).tobytes())
    key = key.hexdigest()[:16]
    cache = out / f"teacher_probs_{key}.npy"
    if cache.exists():
        probs = np.load(cache)
    else:
        probs = 0
        for t in cfg.teachers:
            lm = load_model(t, device)
            if lm.labels != list(labels):
                raise ValueError(f"teacher {t!r} predicts {lm.labels}, the student is trained on {list(labels)}")
            if lm.card["in_size"] != in_size:
                raise ValueError(f"teacher {t!r} takes {lm.card['in_size']} px faces, the student {in_size} px; "
                                 "distill between models of one input size")
            t0 = time.perf_counter()
            # the core's path, as validation and `evaluate` score (engine.predict_proba)
            probs = probs + FaceClassifier.from_module(lm.model, lm.preprocess,
                                                       tta=cfg.teacher_tta).predict_proba(train.images, 256)
            if console is not None:
                console.print(f"teacher {lm.name} ({cfg.teacher_tta} TTA): {len(train)} training faces in "
                              f"{time.perf_counter() - t0:.0f} s")
        probs = (probs / len(cfg.teachers)).astype(np.float32)
        np.save(cache, probs)
    if console is not None:
        agree = float((probs.argmax(1) == train.labels).mean())
        console.print(f"distillation: {len(cfg.teachers)} teacher(s) agree with {agree:.1%} of the training "
                      f"labels; weight {cfg.distill_weight}, temperature {cfg.distill_temperature}")
    return soften(probs, cfg.distill_temperature)
