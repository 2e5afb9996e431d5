"""Release steps for maintainers: turn trained runs into the models that ship inside the package.

Why a library module: ``emotionlab maintain ...`` (``cli/maintain.py``) is a thin shell over these functions, and
benchmarks or tools can call them without going through the command line. Each step writes its model card
through :class:`emotionlab.models.card.ModelCard`, so every released card follows one schema.

The steps, in the order a release runs them:

* :func:`last_epoch` -- a model of a run's last epoch (when the best-validation epoch is not the one to keep);
* :func:`tune_bias` -- a post-hoc logit bias for rare classes, chosen on validation and baked into the classifier;
* :func:`make_ensemble` -- several face models as one (the weighted mean of their probabilities);
* :func:`ship` -- copy a run into the package's weights with its card and test metrics;
* :func:`quantize` -- a static int8 ONNX graph of a model, scored and latency-timed, shipped beside its weights.

Mistakes (bad paths, names, values) raise ``ValueError`` / ``FileNotFoundError`` with one line that names what
was wrong; the command turns them into an error line and exit 2.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..models.card import ModelCard
from .checkpoint import export_last_epoch, write_json

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def command_line() -> str:
    """The command that is running, as a card records it (``emotionlab ...``)."""
    return " ".join(shlex.quote(a) for a in ["emotionlab", *sys.argv[1:]])


def point_aliases(directory: Path, alias: Sequence[str], name: str) -> None:
    """Point public aliases (``default``, ``fast``) at ``name`` in ``directory/aliases.json``."""
    if not alias:
        return
    ap = Path(directory) / "aliases.json"
    al = json.loads(ap.read_text()) if ap.exists() else {}
    al.update({a: name for a in alias})
    write_json(ap, al)


def fer_metrics(model: str, data: Path, ferplus: Path | None, backend: str = "auto", log: Log = _quiet) -> dict:
    """The card metrics of a FER-2013 model: PublicTest / PrivateTest with and without flip TTA, and PrivateTest
    against the FER+ majority when ``ferplus`` is given (an 8-class FER+ model: every split on FER+ labels)."""
    from ..models.hub import load_card
    from .evaluation import run_evaluation

    keep = ("accuracy", "macro_f1", "weighted_f1", "n", "per_class", "ms_per_face")
    metrics = {}
    fp8 = load_card(model).get("label_set") == "ferplus8"
    if fp8 and not ferplus:
        raise ValueError(f"{model} is an 8-class FER+ model: give --ferplus fer2013new.csv to score it")
    for split in ("PublicTest", "PrivateTest"):
        for tta in ("none", "flip"):
            res = run_evaluation(model, data, split=split, tta=tta, quiet=True, backend=backend,
                                 ferplus=ferplus if fp8 else None)
            key = split if tta == "none" else f"{split}+tta_flip"
            metrics[key] = {k: res[k] for k in keep + (("backend",) if backend != "auto" else ())}
            log(f"{model} {key}: acc {res['accuracy']:.4f} macro-F1 {res['macro_f1']:.4f}")
    if ferplus and not fp8:
        res = run_evaluation(model, data, split="PrivateTest", quiet=True, ferplus=ferplus, backend=backend)
        metrics["PrivateTest@FER+majority"] = {k: res[k] for k in ("accuracy", "macro_f1", "n", "per_class",
                                                                    "labels_from")}
        log(f"{model} PrivateTest vs FER+ majority: acc {res['accuracy']:.4f}")
    return metrics


# ------------------------------------------------------------------------------------------------ last epoch
def last_epoch(run: Path, out: Path, weights: str = "auto") -> ModelCard:
    """A model (``best.safetensors`` + ``best.json``) of the last epoch of ``run`` in ``out``; see
    :func:`emotionlab.training.checkpoint.export_last_epoch`. Returns its card."""
    export_last_epoch(run, out, weights)
    return ModelCard.read(Path(out) / "best.json")


# ------------------------------------------------------------------------------------------------ ensemble
def make_ensemble(members: Sequence[str], out: Path, weights: Sequence[float] | None = None,
                  name: str | None = None) -> Path:
    """Write ``out/ensemble.json``: one model that averages the members' probabilities (``weights``: one per member,
    default all 1). Shipped names and aliases are pinned to the model they name today; paths are stored relative
    to the card so the folder can move with its members. The card as written must load, else it is removed."""
    from ..models.ensemble import check_members, ensemble_card
    from ..models.hub import aliases, load_card, load_model, shipped_models

    members = list(members)
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
    if weights and len(weights) != len(members):
        raise ValueError(f"--weight given {len(weights)} times for {len(members)} members: give one per member "
                         "or none")
    ws = [float(w) for w in weights] if weights else [1.0] * len(members)
    if any(not w > 0 for w in ws):
        raise ValueError(f"--weight must be positive, got {ws}")
    cards = [(m, load_card(m)) for m in members]  # the cards check the members; weights load once, below
    check_members(cards, "maintain ensemble")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    al, shipped = aliases(), shipped_models()
    refs = []
    for m in members:
        if m in al or m in shipped:  # an alias is pinned to what it names today: `default` may move
            refs.append(al.get(m, m))
        else:
            rel = os.path.relpath(Path(m).resolve(), out.resolve())
            refs.append(rel if "/" in rel or rel.endswith(".json") else f"./{rel}")
    card = ensemble_card(list(zip(refs, ws)), name or out.resolve().name, cards)
    path = out / "ensemble.json"
    ModelCard.from_dict(card, path).write(path)
    try:
        load_model(out)  # every member's weights must fit its architecture
    except (FileNotFoundError, ValueError):
        path.unlink()
        raise
    return path


# ------------------------------------------------------------------------------------------------ tune-bias
def tune_bias(model: str, data: Path, classes: Sequence[str], out: Path, *, ferplus: Path | None = None,
              metric: str = "macro_f1", tta: str = "flip", lo: float = -1.0, hi: float = 3.0, step: float = 0.1,
              command: str | None = None) -> dict:
    """Post-hoc logit adjustment (Menon et al. 2021): constants added to ``classes``' logits, chosen on the
    validation split of ``data`` to maximize ``metric`` and baked into the classifier's bias, written as a run
    in ``out`` (``best.safetensors`` + ``best.json``) to ship. The test split is never read.

    Returns the record: biases, layer, validation before / after, the split it was chosen on.
    """
    import torch

    from ..models.classifier import FaceClassifier
    from ..models.hub import load_model
    from .calibrate import bake_logit_bias, score, tune_logit_bias, view_logits
    from .checkpoint import save_weights
    from .evaluation import scored_split
    from .metrics import classification_metrics

    out = Path(out)
    if (out / "best.safetensors").exists():
        raise ValueError(f"{out} already holds a model; choose a new --out")
    if not step > 0 or hi < lo:
        raise ValueError(f"--lo {lo} --hi {hi} --step {step}: expected lo <= hi and step > 0")
    lm = load_model(model)
    names = [c.strip() for c in classes if c.strip()]
    unknown = [c for c in names if c not in lm.labels]
    if not names or unknown:
        raise ValueError(f"--classes {','.join(classes)!r}: {', '.join(unknown) or 'none given'} not among the "
                         f"model's labels {', '.join(lm.labels)}")
    val, _ = scored_split(lm, data, "val", ferplus)
    logits = view_logits(lm.model, val.images, lm.preprocess, tta)
    idx = [lm.labels.index(c) for c in names]
    y = np.asarray(val.labels)
    grid = np.round(np.arange(lo, hi + step / 2, step), 4) + 0.0  # no -0.0 in the record
    bias, sweep = tune_logit_bias(logits, y, idx, metric, grid)
    probe = torch.randn(4, lm.card.get("in_chans", 1), lm.card["in_size"], lm.card["in_size"])
    layer = bake_logit_bias(lm.model, bias, probe)
    zero = np.zeros_like(bias)
    before = {m: score(logits, y, zero, m) for m in ("accuracy", "macro_f1")}
    after = {m: score(logits, y, bias, m) for m in ("accuracy", "macro_f1")}
    # the baked model, as shipped code runs it, must score what the sweep promised
    probs = FaceClassifier(lm, backend="torch", tta=tta).predict_proba(val.images)
    vm = classification_metrics(y, probs.argmax(1), list(lm.labels))
    if abs(vm["accuracy"] - after["accuracy"]) > 1e-9:
        raise RuntimeError(f"internal check: the baked model scores {vm['accuracy']:.4f}, the sweep "
                           f"{after['accuracy']:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    save_weights(lm.model, out / "best.safetensors")
    # the source's test metrics, shipping state and files belong to other weights
    card = ModelCard.from_dict(lm.card, lm.card_path or model).without(
        "metrics", "status", "shipped", "onnx_graph", "weights", "storage", "quantized_from", "float_metrics",
        "reproduce")
    split_name = str(val.usage[0]) if len(val) else "val"
    record = {
        "biases": {c: float(bias[i]) for c, i in zip(names, idx)}, "layer": f"{layer}.bias",
        "method": "post-hoc logit adjustment: constants added to the named classes' logits (Menon et al. 2021), "
                  f"grid {lo}..{hi} step {step}, maximizing validation {metric} with {tta} TTA; ties -> smaller bias",
        "chosen_on": f"{split_name} ({len(val)} faces" + (", FER+ majority labels)" if ferplus else ")"),
        "validation_before": before, "validation_after": after, "source": lm.name,
        "command": command or command_line(), "date": _today(),
        "sweep": [r for r in sweep if r["bias"] in (float(bias[r["class"]]), 0.0) or abs(r["bias"] * 10) % 5 < 1e-6],
    }
    card.logit_bias = record
    card.metrics = {"validation": {k: vm[k] for k in ("accuracy", "macro_f1", "weighted_f1", "n")}}
    card.write(out / "best.json")
    return {**record, "split": split_name, "tta": tta, "out": str(out)}


# ------------------------------------------------------------------------------------------------ ship
def ship(run: Path, name: str, *, alias: Sequence[str] = (), data: Path | None = None, status: str = "final",
         ferplus: Path | None = None, fp16: bool = False, log: Log = _quiet) -> Path:
    """Copy a trained run (or an ensemble card whose members are shipped) into the package's weights as ``name``,
    with its card, the test metrics of ``data`` (FER-2013: PublicTest / PrivateTest; a UTKFace folder: test
    metrics by race and age band) and aliases. Returns the shipped card's path."""
    from ..data.utkface import is_utkface
    from ..models import hub
    from ..models.ensemble import member_refs
    from .checkpoint import save_half

    weights_dir, limit = hub.WEIGHTS_DIR, hub.MAX_SHIPPED_FILE_BYTES  # read now: tests point them elsewhere
    wpath, cpath = hub.resolve(run)
    card = ModelCard.read(cpath)
    if card.is_ensemble:  # a card only: its members must be shipped already, each under the size limit
        unshipped = [r for r, _ in member_refs(card.to_dict(), cpath) if r not in hub.shipped_models()]
        if unshipped:
            raise ValueError(f"{cpath}: members {unshipped} are not shipped models; ship each of them first "
                             "(`emotionlab maintain ship RUN --name NAME`) and build the ensemble from their names")
        if fp16:
            raise ValueError("--fp16 applies to weights; an ensemble ships only its card (its members are stored "
                             "already)")
        wpath = None
    elif not fp16 and wpath.stat().st_size > limit:  # --fp16: the halved file is what must fit
        raise ValueError(f"{wpath} is {wpath.stat().st_size / 1e6:.1f} MB; shipped files must stay under "
                         f"{limit:,} bytes (try --fp16)")
    weights_dir.mkdir(parents=True, exist_ok=True)
    card.name, card.status, card.shipped = name, status, _today()
    if wpath is not None and fp16:
        half = weights_dir / f"{name}.safetensors.tmp"
        save_half(wpath, half, "float16 for tensors >= 4096 elements (maintain ship)")
        if half.stat().st_size > limit:
            size = half.stat().st_size
            half.unlink()
            raise ValueError(f"{wpath} is {size / 1e6:.1f} MB even in float16; shipped files must stay under "
                             f"{limit:,} bytes")
        os.replace(half, weights_dir / f"{name}.safetensors")
        card.storage = "float16 for tensors >= 4096 elements; computed in float32"
    elif wpath is not None and wpath.resolve() != (weights_dir / f"{name}.safetensors").resolve():
        shutil.copyfile(wpath, weights_dir / f"{name}.safetensors")  # (re-shipping a shipped model: in place)
    dest = weights_dir / f"{name}.json"
    card.write(dest)
    if data and is_utkface(data):  # attribute model: held-out test metrics with the group report
        _utkface_metrics(card, name, data, log)
        card.write(dest)
    elif data:
        card.metrics = {**(card.metrics or {}), **fer_metrics(name, data, ferplus, log=log)}
        card.metrics["evaluated"] = _today()
        card.write(dest)
    point_aliases(weights_dir, alias, name)
    return dest


def _utkface_metrics(card: ModelCard, name: str, data: Path, log: Log) -> None:
    from ..data import utkface as utk
    from .evaluation import run_evaluation

    for k, v in (("task", "apparent binary gender from a face crop"), ("intended_use", utk.INTENDED_USE),
                 ("labels_provenance", utk.LABELS_PROVENANCE), ("license", utk.LICENSE),
                 ("known_biases", utk.KNOWN_BIASES)):
        card.set(k, v)
    res = run_evaluation(name, data, split="test", quiet=True)
    keep = ("accuracy", "macro_f1", "n", "per_class", "adults_accuracy", "adults", "children", "by_race",
            "by_age", "by_race_adults", "by_gender", "gap_race", "gap_age", "gap", "gaps", "held_out",
            "ms_per_face")
    card.metrics = {**(card.metrics or {}), "test": {k: res[k] for k in keep}, "evaluated": _today()}
    g = res["gaps"]
    card.set("group_gaps", (
        f"held-out test split (n={res['n']}): accuracy {res['accuracy']:.4f}; adults (20+) "
        f"{res['adults_accuracy']:.4f}, children (0-19) {res['children']['accuracy']:.4f}; by race best "
        f"{g['race']['best']} / worst {g['race']['worst']}, gap {g['race']['gap']:.4f}; by age band best "
        f"{g['age']['best']} / worst {g['age']['worst']}, gap {g['age']['gap']:.4f}; among adults by race, gap "
        f"{g['race_adults']['gap']:.4f} ({g['race_adults']['worst']} lowest); female vs male recall gap "
        f"{g['gender']['gap']:.4f} ({g['gender']['worst']} lower)"))
    card.reproduce = [(card.training or {}).get("command", ""), command_line(),
                      f"emotionlab evaluate --model {name} --data {data} --json OUT.json"]
    log(f"{name} test: acc {res['accuracy']:.4f}, adults {res['adults_accuracy']:.4f}, "
        f"gap race {res['gap_race']:.4f}, gap age {res['gap_age']:.4f}")


# ------------------------------------------------------------------------------------------------ quantize
def quantize(model: str, name: str, data: Path, *, calibration: int = 512, exclude: str = "first_conv",
             reduce_range: bool = False, method: str = "minmax", out: Path | None = None,
             alias: Sequence[str] = (), ferplus: Path | None = None, seed: int = 0, notes: str = "",
             log: Log = _quiet) -> tuple[Path, dict]:
    """A static int8 ONNX graph of ``model`` (ranges from ``calibration`` seeded Training faces of ``data``), its
    latency against the float graph and its PublicTest / PrivateTest metrics, shipped into ``out`` (default: the
    package's weights) as ``name``. Returns (card path, latency record)."""
    from ..data.loader import load_dataset, train_val_test
    from ..inference.quantize import graph_latency_ms, machine_description, quantize_model
    from ..models import hub
    from ..models.onnx import cached_model_onnx

    out = Path(out) if out is not None else hub.WEIGHTS_DIR
    src = hub.load_model(model)
    train, _, _ = train_val_test(load_dataset(data, size=src.card["in_size"]))
    if calibration < 1 or calibration > len(train):
        raise ValueError(f"--calibration {calibration}: expected 1..{len(train)} (training faces in {data})")
    idx = np.sort(np.random.default_rng(seed).choice(len(train), calibration, replace=False))
    cpath = quantize_model(model, train.images[idx], out, name, exclude=exclude, reduce_range=reduce_range,
                           method=method, calibration_source=f"{calibration} random Training faces of {data.name} "
                                                             f"(seed {seed})", notes=notes)
    graph = cpath.with_suffix(".onnx")
    if graph.stat().st_size > hub.MAX_SHIPPED_FILE_BYTES:
        raise ValueError(f"{graph} is {graph.stat().st_size / 1e6:.1f} MB; shipped files must stay under "
                         f"{hub.MAX_SHIPPED_FILE_BYTES:,} bytes")
    card = ModelCard.read(cpath)
    shape = (int(card.in_chans or 1), int(card.in_size), int(card.in_size))
    float_graph = cached_model_onnx(src)
    rounds: dict[str, list[float]] = {"int8": [], "float": [], "int8_b64": []}
    for _ in range(5):  # interleaved: a busy moment of the machine slows both graphs, not one
        rounds["int8"].append(graph_latency_ms(graph, shape))
        rounds["float"].append(graph_latency_ms(float_graph, shape))
        rounds["int8_b64"].append(graph_latency_ms(graph, shape, batch=64))
    lat = {"int8_ms_per_face": float(np.median(rounds["int8"])), "int8_ms_per_face_min": min(rounds["int8"]),
           "float_ms_per_face": float(np.median(rounds["float"])), "float_ms_per_face_min": min(rounds["float"]),
           "int8_ms_per_face_batch64": float(np.median(rounds["int8_b64"])),
           "how": "ONNX Runtime, 1 thread, batch 1 (300 calls) / batch 64 (20 calls), random input; median and "
                  "min over 5 interleaved rounds of each round's median",
           "machine": machine_description(), "load_average_1min": round(os.getloadavg()[0], 2), "date": _today()}
    card.onnx_graph = {**(card.onnx_graph or {}), "latency": lat}
    metrics = fer_metrics(str(cpath), data, ferplus, backend="onnx", log=log)
    metrics["evaluated"] = lat["date"]
    card.metrics = metrics
    card.float_metrics = {k: v.get("accuracy") for k, v in src.card.get("metrics", {}).items()
                          if isinstance(v, dict) and "accuracy" in v}
    card.status, card.shipped = "final", lat["date"]
    card.reproduce = [command_line(), f"emotionlab evaluate --model {name} --data {data} --json OUT.json"]
    card.write(cpath)
    point_aliases(out, alias, name)
    return cpath, lat
