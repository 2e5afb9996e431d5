"""torchvision-reference-style training: plain ``train_one_epoch`` / ``evaluate`` functions and ``fit``.

The whole dataset lives in memory as uint8 (FER-2013 is 80 MB); batches are normalized and augmented as
tensors, which is faster on 2 CPU cores than a DataLoader with worker processes and runs unchanged on a GPU.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.labels import get_label_set
from ..data.preprocess import PreprocessConfig
from ..models import count_mflops, count_params, create_model
from ..models.classifier import FaceClassifier, softmax, to_input, tta_views  # noqa: F401  (tta_views: re-exported)
from .augment import augment_batch, mix_batch
from .checkpoint import load_checkpoint, save_checkpoint, save_weights, write_json
from .config import OPTIMIZERS, SCHEDULES, TrainConfig
from .metrics import classification_metrics


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def hardware_string(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def autocast_ctx(device: torch.device, enabled: bool):
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


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                       smoothing: float = 0.0) -> torch.Tensor:
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


def train_one_epoch(model, opt, sched, sched_unit, images: torch.Tensor, targets: torch.Tensor, order: torch.Tensor,
                    cfg: TrainConfig, pre: PreprocessConfig, device, class_w=None, gen=None, progress=None,
                    task=None, ema=None) -> dict:
    model.train()
    bs = cfg.batch_size
    n_batches = len(order) // bs  # drop_last: even batch sizes avoid the torch 2.13 channels_last crash
    # Running sums stay on the device: reading them every step would make a GPU wait for each batch.
    tot_loss = torch.zeros((), dtype=torch.float64, device=device)
    tot_correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    t0 = time.perf_counter()
    use_ac = cfg.bf16
    order = order.to(images.device)
    for b in range(n_batches):
        idx = order[b * bs:(b + 1) * bs]
        x = to_input(images[idx].to(device, non_blocking=True), pre)
        y = targets[idx].to(device, non_blocking=True)
        x = augment_batch(x, cfg.augment, gen, occlusion_fill=-pre.mean / pre.std)  # black = evaluate's patches
        x, y = mix_batch(x, y, cfg.augment, gen)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_ctx(device, use_ac):
            logits = model(x)
        loss = soft_cross_entropy(logits, y, class_w, cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        if sched is not None and sched_unit == "step":
            sched.step()
        tot_loss += loss.detach() * len(idx)
        tot_correct += (logits.argmax(1) == y.argmax(1)).sum()
        seen += len(idx)
        if progress is not None:
            desc = None
            if b % 20 == 19 or b == n_batches - 1:  # a sync every 20 batches is cheap everywhere
                el = time.perf_counter() - t0
                desc = (f"loss {float(tot_loss) / seen:.3f} acc {int(tot_correct) / seen:.3f} "
                        f"{seen / max(el, 1e-9):.0f} img/s")
            progress.update(task, advance=1, description=desc)
    loss_sum, correct = float(tot_loss), int(tot_correct)  # waits for the last batch: the timing is honest
    el = time.perf_counter() - t0
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "img_s": seen / max(el, 1e-9),
            "seconds": el}


def predict_proba(model: nn.Module, images_u8: np.ndarray | torch.Tensor, pre: PreprocessConfig,
                  batch_size: int = 256, tta: str = "none", device=None, bf16: bool = False) -> np.ndarray:
    """Class probabilities for uint8 face crops (N,S,S) already at the model's size, of a bare PyTorch module
    (a model in training, a teacher): the core's path (``models.classifier.FaceClassifier``), so validation
    scores exactly what ``evaluate`` and the pipeline compute."""
    return FaceClassifier.from_module(model, pre, device=device, tta=tta, bf16=bf16).predict_proba(images_u8,
                                                                                                  batch_size)


def evaluate(model, images_u8, labels, label_names, pre: PreprocessConfig, tta: str = "none",
             batch_size: int = 256) -> dict:
    probs = predict_proba(model, images_u8, pre, batch_size, tta)
    m = classification_metrics(np.asarray(labels), probs.argmax(1), label_names)
    m["nll"] = float(-np.log(np.clip(probs[np.arange(len(labels)), np.asarray(labels)], 1e-12, 1)).mean()) if len(labels) else 0.0
    return m


def _targets(ds, num_classes: int, cfg: TrainConfig, teacher: np.ndarray | None = None) -> torch.Tensor:
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
            probs = probs + predict_proba(lm.model, train.images, lm.preprocess, 256, cfg.teacher_tta)
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


def check_recipe(cfg: TrainConfig, model: nn.Module, labels) -> None:
    """Refuse what the run could only refuse later, before any data is read or teacher run: a time budget with a
    schedule that fixes its steps when built, an ``init_from`` of another architecture or input size, and
    teachers that predict other classes or take another input size (read from their cards, JSON only)."""
    from ..models.hub import load_card

    if cfg.time_budget and cfg.schedule not in ("cosine", "plateau", "none"):
        raise ValueError(f"time_budget needs schedule cosine, plateau or none (got {cfg.schedule!r}): the others "
                         "fix their steps when they are built")
    if cfg.init_from:
        card = load_card(cfg.init_from)
        if card.get("arch") is not None and (card.get("arch") != model.arch or card.get("in_size") != model.in_size):
            raise ValueError(f"--init-from {cfg.init_from}: it is {card.get('arch')} at {card.get('in_size')} px, "
                             f"the run trains {model.arch} at {model.in_size} px")
    if cfg.teachers and cfg.distill_weight > 0:
        for t in cfg.teachers:
            card = load_card(t)
            if card.get("labels") is not None and list(card["labels"]) != list(labels):
                raise ValueError(f"teacher {t!r} predicts {card['labels']}, the student is trained on {list(labels)}")
            if card.get("in_size") is not None and card["in_size"] != model.in_size:
                raise ValueError(f"teacher {t!r} takes {card['in_size']} px faces, the student {model.in_size} px; "
                                 "distill between models of one input size")


def init_weights(model: nn.Module, source: str, num_classes: int) -> list[str]:
    """Fine-tuning start: weights of a shipped model, run directory or .safetensors of the same architecture.

    A source with another number of classes (a FER7 model fine-tuned to FER+'s 8) gives every tensor but the
    classifier's; those keep their fresh init and their names are returned. Any other mismatch is an error.
    """
    from ..models.hub import load_model

    src = load_model(source)  # resolves the name, checks the weights against their own card's architecture
    if src.card.get("arch") != model.arch or src.card.get("in_size") != model.in_size:
        raise ValueError(f"--init-from {source}: it is {src.card.get('arch')} at {src.card.get('in_size')} px, "
                         f"the run trains {model.arch} at {model.in_size} px")
    mine, theirs = model.state_dict(), src.model.state_dict()
    differ = [k for k in mine if k in theirs and mine[k].shape != theirs[k].shape]
    head_only = all(mine[k].shape[0] == num_classes and theirs[k].shape[0] == len(src.labels) for k in differ)
    if differ and (len(src.labels) == num_classes or not head_only):
        raise ValueError(f"--init-from {source}: tensors {differ[:4]} differ in shape beyond the classifier")
    model.load_state_dict({k: (mine[k] if k in differ else v) for k, v in theirs.items()})
    return differ


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [h["train_loss"] for h in history], label="train")
    a1.plot(ep, [h["val_loss"] for h in history], label="validation")
    a1.set_title("loss")
    a1.set_xlabel("epoch")
    a1.legend()
    a2.plot(ep, [h["train_acc"] for h in history], label="train")
    a2.plot(ep, [h["val_acc"] for h in history], label="validation")
    a2.set_title("accuracy")
    a2.set_xlabel("epoch")
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_training_data(cfg: TrainConfig, in_size: int):
    from ..data.ferplus import load_ferplus, with_ferplus
    from ..data.loader import load_dataset, train_val_test

    from ..data.utkface import is_utkface, load_utkface

    if is_utkface(cfg.data):  # UTKFace gender: its own group-aware split (see data/utkface.py)
        from ..inference.detectors import utkface_detector

        u = load_utkface(cfg.data, size=in_size, seed=cfg.seed, skip_bad=cfg.skip_bad, detector=utkface_detector())
        ds, train, val = u.face_dataset("all"), u.face_dataset("train"), u.face_dataset("val")
        if cfg.max_train and len(train) > cfg.max_train:
            rng = np.random.default_rng(cfg.seed)
            train = train.subset(np.sort(rng.choice(len(train), cfg.max_train, replace=False)))
        return ds, train, val
    ds = load_dataset(cfg.data, size=in_size, label_set=cfg.label_set, skip_bad=cfg.skip_bad)
    votes = load_ferplus(cfg.ferplus) if cfg.ferplus else None
    tr, va, _test = train_val_test(ds, cfg.seed)  # the test part is never touched here
    # FER+ soft targets, or for ferplus8 every label and target from the 10 FER+ annotators
    train = with_ferplus(tr, cfg.label_set, votes)
    val = with_ferplus(va, cfg.label_set, votes, majority_only=True)
    if cfg.max_train and len(train) > cfg.max_train:
        rng = np.random.default_rng(cfg.seed)
        train = train.subset(np.sort(rng.choice(len(train), cfg.max_train, replace=False)))
    return ds, train, val


def fit(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, console=None, command: str | None = None,
        splits=None) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; select on validation; write checkpoints, history and a model card.

    ``splits`` = (train, val) FaceDatasets overrides loading ``cfg.data`` (cross-validation folds).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = console or Console(stderr=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if resume and (out / "config.json").exists() and (out / "last.json").exists():
        saved = json.loads((out / "config.json").read_text())
        # The recipe comes from the run; how long and where to run it may change on resume (the time budget
        # is this invocation's wall clock, counted from the resumed epoch).
        saved.update(epochs=cfg.epochs, time_budget=cfg.time_budget, threads=cfg.threads, device=cfg.device)
        cfg = TrainConfig.from_dict(saved)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # Subnormal floats (Adam + L2 pushes unused weights there) make x86 CPUs ~20x slower; treat them as zero. This
    # sets the process's CPU mode (FTZ / DAZ), which is what a training process wants anyway.
    torch.set_flush_denormal(True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = pick_device(cfg.device)
    ls = get_label_set(cfg.label_set)
    model = create_model(cfg.model, num_classes=len(ls), in_size=cfg.in_size, **cfg.model_kwargs)
    in_size = model.in_size
    check_recipe(cfg, model, ls.labels)  # flag combinations: refused before the data is read
    pre = PreprocessConfig(size=in_size)
    data_card = None
    if splits is not None:
        train, val = splits
        source = train.source
    else:
        ds, train, val = load_training_data(cfg, in_size)
        source = ds.source
        data_card = ds.extra.get("card")  # datasets other than FER-2013 describe themselves (UTKFace)
        if "ferplus" in train.extra:  # 8-class FER+: say which rows the annotators' labels kept
            data_card = {"labels": "FER+ majority of 10 annotators (Barsoum et al. 2016); soft targets = votes",
                         "ferplus_rows": {"train": train.extra["ferplus"], "val": val.extra["ferplus"]}}
            tf, vf = train.extra["ferplus"], val.extra["ferplus"]
            console.print(f"FER+ labels: train {tf['kept']} ({tf['no_majority_kept']} without a majority kept with "
                          f"their top vote, {tf['excluded_not_an_emotion']} unknown / not-a-face left out); val "
                          f"{vf['kept']} with a majority ({vf['excluded_no_majority']} without, "
                          f"{vf['excluded_not_an_emotion']} not an emotion, left out)")
    console.print(f"[bold]{cfg.model}[/] {count_params(model) / 1e6:.2f}M params, {in_size}px; "
                  f"train {len(train)}  val {len(val)}  ({source}) on {device}")
    if cfg.init_from and not (resume and (out / "last.json").exists()):
        fresh = init_weights(model, cfg.init_from, len(ls))
        console.print(f"initialized from {cfg.init_from}"
                      + (f" (classifier {', '.join(fresh)} re-initialized for {len(ls)} classes)" if fresh else ""))
    model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    fwd_model = torch.compile(model) if cfg.compile else model
    images = torch.from_numpy(train.images)
    teacher = teacher_targets(cfg, train, ls.labels, in_size, device, out, console)
    targets = _targets(train, len(ls), cfg, teacher)
    if device.type == "cuda":  # 28k faces are 66 MB: keep them on the GPU, batches never cross the bus
        images, targets = images.to(device), targets.to(device)
        torch.backends.cudnn.benchmark = True
    counts = np.bincount(train.labels, minlength=len(ls)).astype(np.float64)
    class_w = None
    if cfg.class_weights:
        class_w = torch.tensor(loss_class_weights(counts, cfg.class_weight_power), dtype=torch.float32,
                               device=device)
        console.print("class weights " + "  ".join(f"{n} {w:.2f}" for n, w in zip(ls.labels, class_w.tolist())))
    steps = len(train) // cfg.batch_size
    if steps == 0:
        raise ValueError(f"training set has {len(train)} images, fewer than one batch of {cfg.batch_size}")
    # bf16 auto, timed on one full (even) training batch and decided once: cfg keeps the choice, so every fold of
    # `cv` trains the same way
    if cfg.bf16 == "auto":
        x = to_input(images[:cfg.batch_size].to(device), pre, cfg.channels_last)
        cfg.bf16, speed = choose_bf16(model, x, len(ls), device)
        console.print(f"bf16 auto: {'on' if cfg.bf16 else 'off'}" + (
            f" (one training step: fp32 {speed['fp32_img_s']:.0f} img/s, bf16 autocast {speed['bf16_img_s']:.0f} "
            f"img/s)" if speed else f" ({device.type})"))
    opt = build_optimizer(model, cfg)
    sched, unit = build_scheduler(opt, cfg, steps)
    ema = make_ema(model, cfg.ema_decay) if cfg.ema_decay else None
    eval_model = ema.module if ema is not None else model  # what is validated, selected and shipped
    history: list[dict] = []
    start_epoch, best, best_epoch, bad_epochs = 0, -1.0, -1, 0
    if resume and (out / "last.json").exists():
        st = load_checkpoint(out, model, opt, sched, ema)
        start_epoch, history = st["epoch"] + 1, st.get("history", [])
        best, best_epoch, bad_epochs = st.get("best", -1.0), st.get("best_epoch", -1), st.get("bad_epochs", 0)
        console.print(f"resumed from {out / 'last.json'} after epoch {st['epoch'] + 1}")
    write_json(out / "config.json", cfg.to_dict())
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + start_epoch)
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    planner = (EpochPlanner(cfg.time_budget, cfg.epochs, start_epoch, anneal=cfg.schedule == "cosine")
               if cfg.time_budget else None)
    epoch = start_epoch
    while epoch < cfg.epochs:
        if cfg.balanced_sampler:
            p = (1.0 / counts)[train.labels]
            order = torch.multinomial(torch.tensor(p / p.sum()), len(train), replacement=True, generator=gen)
        else:
            order = torch.randperm(len(train), generator=gen)
        with Progress(TextColumn(f"epoch {epoch + 1}/{cfg.epochs}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.description}"), TimeRemainingColumn(), console=console,
                      transient=True, disable=not console.is_terminal) as prog:
            task = prog.add_task("", total=steps)
            tr = train_one_epoch(fwd_model, opt, sched, unit, images, targets, order, cfg, pre, device, class_w,
                                 gen, prog, task, ema)
        vm = evaluate(eval_model, val.images, val.labels, ls.labels, pre, "flip" if cfg.val_tta else "none")
        if sched is not None and unit == "epoch":
            sched.step()
        elif sched is not None and unit == "plateau":
            sched.step(vm[cfg.select])
        row = {"epoch": epoch + 1, "train_loss": tr["loss"], "train_acc": tr["acc"], "val_loss": vm["nll"],
               "val_acc": vm["accuracy"], "val_macro_f1": vm["macro_f1"], "lr": opt.param_groups[0]["lr"],
               "img_s": tr["img_s"], "seconds": tr["seconds"]}
        history.append(row)
        improved = vm[cfg.select] > best
        if improved:
            best, best_epoch, bad_epochs = vm[cfg.select], epoch + 1, 0
            save_weights(eval_model, out / "best.safetensors")
            write_json(out / "best.json", model_card(eval_model, cfg, pre, ls, vm, history, device, command,
                                                                data_card))
        else:
            bad_epochs += 1
        console.print(f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {tr['loss']:.4f}  acc {tr['acc']:.4f}  "
                      f"val_loss {vm['nll']:.4f}  val_acc {vm['accuracy']:.4f}  f1 {vm['macro_f1']:.4f}  "
                      f"lr {row['lr']:.2e}  {tr['img_s']:.0f} img/s  {tr['seconds']:.0f}s" + ("  *" if improved else ""))
        save_checkpoint(out, model, opt, sched, {"epoch": epoch, "history": history, "best": best,
                                                  "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                                                  "config": cfg.to_dict()}, ema)
        _write_history(out, history)
        epoch += 1
        if planner is not None:
            planned = planner.after_epoch(epoch)
            if planned != cfg.epochs:
                console.print(f"time budget {cfg.time_budget:.0f} s: {planned} epochs planned (was {cfg.epochs})")
                cfg.epochs = planned
                write_json(out / "config.json", cfg.to_dict())
        if cfg.patience and bad_epochs >= cfg.patience:
            console.print(f"early stop: no validation improvement for {cfg.patience} epochs")
            break
    if planner is not None and (out / "best.json").exists():  # the card records the schedule that really ran
        card = json.loads((out / "best.json").read_text())
        card["training"]["recipe"]["epochs"] = cfg.epochs
        write_json(out / "best.json", card)
    plot_history(history, out / "curves.png")
    best_row = history[best_epoch - 1] if 0 < best_epoch <= len(history) else {}
    return {"best_val_acc": best_row.get("val_acc", best), "best_val_macro_f1": best_row.get("val_macro_f1"),
            "select": cfg.select, "best_epoch": best_epoch, "out": str(out), **history_summary(history),
            "hardware": hardware_string(device), "params": count_params(model)}


def history_summary(history: list[dict]) -> dict:
    """Epochs run, median seconds per epoch and median img/s of a run's history (rows of fit or of history.csv).

    Medians: a few epochs slowed by another job on a shared machine should not set the study's compute column.
    """
    secs = [float(h["seconds"]) for h in history]
    return {"epochs_run": len(history), "seconds_per_epoch": float(np.median(secs)) if secs else None,
            "img_s": float(np.median([float(h["img_s"]) for h in history])) if history else None}


class EpochPlanner:
    """How many epochs fit in ``budget`` seconds of wall clock, from the epochs measured so far.

    With a fixed horizon (``anneal=True``: cosine) the plan follows the mean measured rate both ways while the
    first quarter of the plan runs (a GPU shared with other jobs speeds up when they end); later it only
    shrinks, so the cosine tail is never stretched. Without one (plateau, constant rate) nothing depends on the
    plan but the stopping point, so it follows the remaining time at the recent epoch time (median of the last
    three) for the whole run: a few slow epochs beside another job no longer cut the run short for good, and the
    run stops when the next epoch would overrun the budget. With a horizon the plan never drops below the epochs
    already run plus one while time is left. It never exceeds ``max_epochs``.
    """

    def __init__(self, budget: float, max_epochs: int, start_epoch: int = 0, clock=time.perf_counter,
                 anneal: bool = True):
        self.budget, self.max_epochs, self.start_epoch, self.clock = budget, max_epochs, start_epoch, clock
        self.anneal = anneal
        self.t0 = self.t_last = clock()
        self.planned = max_epochs
        self.durations: list[float] = []

    def after_epoch(self, done: int) -> int:
        now = self.clock()
        elapsed = now - self.t0
        self.durations.append(now - self.t_last)
        self.t_last = now
        ran = done - self.start_epoch
        if self.anneal:
            fit = self.start_epoch + int(self.budget / max(elapsed / max(ran, 1), 1e-9))
        else:
            recent = float(np.median(self.durations[-3:]))
            fit = done + int(max(self.budget - elapsed, 0.0) / max(recent, 1e-9))
        floor = done + (1 if self.anneal and elapsed < self.budget else 0)  # no fixed horizon: stop at the budget
        fit = max(floor, min(self.max_epochs, fit))
        if not self.anneal or done <= max(1, self.planned // 4) or fit < self.planned:
            self.planned = fit
        return self.planned


def _write_history(out: Path, history: list[dict]) -> None:
    with open(out / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)


_SELECT_WORDS = {"accuracy": "accuracy", "macro_f1": "macro-F1"}


def model_card(model, cfg: TrainConfig, pre: PreprocessConfig, ls, val_metrics: dict, history, device,
               command: str, data_card: dict | None = None) -> dict:
    last = history[-1] if history else {}
    card = {
        "format": "emotionlab-model/1",
        "name": cfg.model,
        "arch": model.arch,
        "arch_kwargs": getattr(model, "arch_kwargs", {}),
        "num_classes": len(ls),
        "label_set": ls.name,
        "labels": list(ls.labels),
        "in_size": model.in_size,
        "in_chans": model.in_chans,
        "preprocess": pre.to_dict(),
        "params": count_params(model),
        "mflops": round(count_mflops(create_model(model.arch, len(ls), model.in_size, model.in_chans,
                                                  **getattr(model, "arch_kwargs", {})), model.in_size), 2),
        "training": {
            "data": cfg.data,
            "ferplus": cfg.ferplus,
            "selection": f"best validation {_SELECT_WORDS[cfg.select]} (FER-2013 PublicTest); PrivateTest never "
                         "used in training",
            "recipe": cfg.to_dict(),
            "command": command,
            "epochs_run": last.get("epoch"),
            "img_s": last.get("img_s"),
            "hardware": hardware_string(device),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        },
        "metrics": {"validation": {k: val_metrics[k] for k in ("accuracy", "macro_f1", "weighted_f1", "n")}},
    }
    if data_card:
        card["training"].update(data_card)
        if "ferplus_rows" in data_card:
            card["training"]["selection"] = (f"best validation {_SELECT_WORDS[cfg.select]} on the FER+ majority "
                                             "labels of FER-2013 PublicTest; PrivateTest never used in training")
    return card
