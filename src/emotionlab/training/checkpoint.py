"""Checkpoints without pickle: safetensors for tensors, JSON for everything else.

A run directory holds ``last.safetensors`` + ``last.json`` (model, optimizer and RNG tensors / epoch,
optimizer hyper-parameters, scheduler state, history, config) for ``--resume``, and ``best.safetensors`` +
``best.json`` (the model card) for the best validation epoch. :func:`export_last_epoch` makes a model of the
last epoch instead (a robustness stage is chosen on more than validation accuracy, so its best model need not be
its best-validation epoch).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..models.card import ModelCard
from ..models.registry import flush_subnormals


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": str(obj)}
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def _unjson(obj):
    if isinstance(obj, dict):
        if set(obj) == {"__float__"}:
            return float(obj["__float__"])
        return {k: _unjson(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unjson(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, data: dict) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2))
    os.replace(tmp, path)


def save_weights(model: torch.nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> None:
    sd = {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()}
    flush_subnormals(sd)  # a model file never carries the values that make CPUs ~20x slower
    tmp = str(path) + ".tmp"
    save_file(sd, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, path)


#: tensors at least this large go to float16 in :func:`save_half`; BN statistics, biases and small tensors stay fp32
HALF_MIN_NUMEL = 4096


def save_half(src: str | os.PathLike, dst: str | os.PathLike, note: str = "float16 for tensors >= 4096 elements"
              ) -> None:
    """Copy a weight file with its large tensors in float16: half the bytes (shipping, the GPU's transfer limit),
    accuracy measured after the copy. Loading casts back to the model's float32."""
    sd = load_file(str(src))
    save_file({k: (v.half() if v.is_floating_point() and v.numel() >= HALF_MIN_NUMEL else v) for k, v in sd.items()},
              str(dst), metadata={"emotionlab_transport": note})


def load_weights(model: torch.nn.Module, path: str | os.PathLike, strict: bool = True) -> torch.nn.Module:
    sd = load_file(str(path))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if strict and (missing or unexpected):
        raise ValueError(f"{path}: weights do not fit the architecture (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    return model


def save_checkpoint(run_dir: Path, model, optimizer, scheduler, state: dict, ema=None) -> None:
    """Everything needed to resume after the epoch in ``state['epoch']`` (and the weight EMA when there is one)."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if ema is not None:  # AveragedModel: module.* weights / buffers + n_averaged
        tensors.update({f"ema.{k}": v.detach().contiguous().cpu() for k, v in ema.state_dict().items()})
    opt_sd = optimizer.state_dict()
    opt_scalars: dict = {}
    for pid, st in opt_sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor) and val.ndim > 0:
                tensors[f"optim.{pid}.{key}"] = val.detach().contiguous().cpu()
            else:
                opt_scalars.setdefault(str(pid), {})[key] = float(val)
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(run_dir / "last.safetensors.tmp"))
    os.replace(run_dir / "last.safetensors.tmp", run_dir / "last.safetensors")
    sched_sd = scheduler.state_dict() if scheduler is not None else None
    if sched_sd is not None:
        sched_sd = {k: v for k, v in sched_sd.items() if not callable(v) and k != "lr_lambdas"}
    write_json(run_dir / "last.json", {**state, "optimizer": {"param_groups": opt_sd["param_groups"],
                                                             "scalars": opt_scalars}, "scheduler": sched_sd})


def _part(tensors: dict, prefix: str) -> dict:
    """The tensors saved under ``prefix`` (``model.``, ``ema.``, ``ema.module.``), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def export_last_epoch(run_dir: str | os.PathLike, out_dir: str | os.PathLike, weights: str = "auto") -> Path:
    """Write the last epoch of ``run_dir`` as a model directory (``best.safetensors`` + ``best.json``) in
    ``out_dir``, so every command that takes a run directory (evaluate, ship, quantize, benchmarks) can use it.

    ``weights``: ``ema`` (the weight average, which is what the run validated when it had one), ``model`` (the raw
    weights) or ``auto`` (ema when the checkpoint holds one). The card is the run's own, with the selection, the
    epoch and the last epoch's validation metrics put in its place.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    ckpt, state_path, card_path = (run_dir / n for n in ("last.safetensors", "last.json", "best.json"))
    for f in (ckpt, state_path, card_path):
        if not f.exists():
            raise FileNotFoundError(f"{f}: missing; expected a training run directory (emotionlab train --out DIR)")
    if out_dir.resolve() == run_dir.resolve():
        raise ValueError(f"{out_dir}: the output directory must not be the run itself (its best model is there)")
    if weights not in ("auto", "ema", "model"):
        raise ValueError(f"weights={weights!r}; use auto, ema or model")
    tensors = load_file(str(ckpt))
    parts = {"ema": _part(tensors, "ema.module."), "model": _part(tensors, "model.")}
    which = ("ema" if parts["ema"] else "model") if weights == "auto" else weights
    if not parts[which]:
        raise ValueError(f"{ckpt}: holds no {which} weights (the run had no ema_decay); use --weights model")
    state = _unjson(json.loads(state_path.read_text()))
    card = ModelCard.read(card_path)
    epoch = int(state["epoch"]) + 1  # last.json counts from 0
    last = (state.get("history") or [{}])[-1]
    card.training = dict(card.training or {})
    card.training["selection"] = (f"the last epoch ({epoch}) of {run_dir}, {which} weights; not the best "
                                  f"validation epoch ({state.get('best_epoch')})")
    card.training["epochs_run"] = epoch
    val = dict((card.metrics or {}).get("validation", {}))
    val.pop("weighted_f1", None)  # the history keeps accuracy and macro-F1 per epoch, not weighted F1
    val.update({k: last[h] for k, h in (("accuracy", "val_acc"), ("macro_f1", "val_macro_f1")) if h in last})
    card.metrics = {**(card.metrics or {}), "validation": val}
    out_dir.mkdir(parents=True, exist_ok=True)
    flush_subnormals(parts[which])  # like save_weights: a model file carries no subnormal values
    save_file({k: v.contiguous() for k, v in parts[which].items()}, str(out_dir / "best.safetensors"),
              metadata={"emotionlab_source": f"{ckpt} epoch {epoch} ({which})"})
    card.write(out_dir / "best.json")
    return out_dir


def load_checkpoint(run_dir: Path, model, optimizer, scheduler, ema=None) -> dict:
    tensors = load_file(str(run_dir / "last.safetensors"))
    state = _unjson(json.loads((run_dir / "last.json").read_text()))
    model.load_state_dict(_part(tensors, "model."))
    if ema is not None:
        ema_sd = _part(tensors, "ema.")
        if not ema_sd:
            raise ValueError(f"{run_dir / 'last.safetensors'}: the run now asks for ema_decay but its checkpoint "
                             "holds no weight average; resume without it or start a new run")
        ema.load_state_dict(ema_sd)
    opt_state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, key = k.split(".", 2)
            opt_state.setdefault(int(pid), {})[key] = v
    for pid, sc in state["optimizer"]["scalars"].items():
        for key, val in sc.items():
            opt_state.setdefault(int(pid), {})[key] = torch.tensor(val)
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["optimizer"]["param_groups"]})
    if scheduler is not None and state.get("scheduler"):
        sd = scheduler.state_dict()
        sd.update(state["scheduler"])
        scheduler.load_state_dict(sd)
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return state
