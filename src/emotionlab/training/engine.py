"""The training loop, torchvision-reference style: plain ``train_one_epoch`` / ``evaluate`` functions and ``fit``
(checkpoints every epoch, ``--resume``, selection on validation, the run's card).

The whole dataset lives in memory as uint8 (FER-2013 is 80 MB); batches are normalized and augmented as
tensors, which is faster on 2 CPU cores than a DataLoader with worker processes and runs unchanged on a GPU.

The other concerns of a run live beside this module and are re-exported here, so ``from
emotionlab.training.engine import X`` keeps working: ``optim`` (optimizer, schedule, loss, weight EMA),
``hardware`` (device, bf16 autocast), ``distill`` (targets and teachers), ``planner`` (``--time-budget``) and
``cards`` (the run's model card).
"""
from __future__ import annotations

import csv
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.labels import get_label_set
from ..data.preprocess import PreprocessConfig
from ..models import count_params, create_model
from ..models.card import ModelCard
from ..models.classifier import FaceClassifier, to_input, tta_views  # noqa: F401  (tta_views: re-exported)
from .augment import augment_batch, mix_batch
from .cards import model_card
from .checkpoint import load_checkpoint, save_checkpoint, save_weights, write_json
from .config import TrainConfig
from .distill import soften, targets as _targets, teacher_targets  # noqa: F401  (soften: re-exported)
from .hardware import autocast_ctx, choose_bf16, hardware_string, pick_device
from .metrics import classification_metrics
from .optim import (build_optimizer, build_scheduler, loss_class_weights, make_ema,  # noqa: F401
                    param_groups, soft_cross_entropy)
from .planner import EpochPlanner, history_summary

__all__ = ["fit", "train_one_epoch", "evaluate", "predict_proba", "load_training_data", "check_recipe",
           "init_weights", "plot_history", "model_card", "EpochPlanner", "history_summary", "build_optimizer",
           "build_scheduler", "param_groups", "soft_cross_entropy", "loss_class_weights", "make_ema", "soften",
           "teacher_targets", "autocast_ctx", "choose_bf16", "hardware_string", "pick_device", "to_input",
           "tta_views"]


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

        u = load_utkface(cfg.data, size=in_size, seed=cfg.seed, skip_bad=cfg.skip_bad, detector=utkface_detector(),
                         align=cfg.align)
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
            model_card(eval_model, cfg, pre, ls, vm, history, device, command, data_card).write(out / "best.json")
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
        card = ModelCard.read(out / "best.json")
        card.training["recipe"]["epochs"] = cfg.epochs
        card.write(out / "best.json")
    plot_history(history, out / "curves.png")
    best_row = history[best_epoch - 1] if 0 < best_epoch <= len(history) else {}
    return {"best_val_acc": best_row.get("val_acc", best), "best_val_macro_f1": best_row.get("val_macro_f1"),
            "select": cfg.select, "best_epoch": best_epoch, "out": str(out), **history_summary(history),
            "hardware": hardware_string(device), "params": count_params(model)}


def _write_history(out: Path, history: list[dict]) -> None:
    with open(out / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
