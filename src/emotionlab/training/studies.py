"""Multi-run experiments: stratified k-fold cross-validation (seed 001) and the input-size study (seed 002)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import TrainConfig
from .engine import evaluate, fit, history_summary


def _stderr_console():
    """Progress goes to stderr, where the CLI's own console writes (library code never imports ``cli``)."""
    from rich.console import Console

    return Console(stderr=True)


def _config(model: str, data: Path, config: Path | None, **over) -> TrainConfig:
    over = {k: v for k, v in over.items() if v is not None}
    if config:
        return TrainConfig.from_yaml(config, model=model, data=str(data), **over)
    return TrainConfig.from_dict({"model": model, "data": str(data), **over})


def _mean_std(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0}


def cross_validate(model: str, data: Path, folds: int = 5, config: Path | None = None, epochs: int | None = None,
                   out: Path = Path("runs/cv"), max_train: int | None = None, seed: int = 0,
                   batch_size: int | None = None, console=None) -> dict:
    """k models on stratified folds of the training part; mean ± std of every metric, per class too.
    ``console``: Rich console for progress (default: a new one on stderr)."""
    from ..data.ferplus import with_ferplus
    from ..data.loader import load_dataset, train_val_test
    from ..data.split import kfold_indices
    from ..models.hub import load_model

    console = console or _stderr_console()
    cfg = _config(model, data, config, epochs=epochs, seed=seed, batch_size=batch_size)
    from ..models import create_model

    size = create_model(cfg.model, in_size=cfg.in_size).in_size
    ds = with_ferplus(load_dataset(data, size=size, label_set=cfg.label_set), cfg.label_set, cfg.ferplus or None)
    train, _, _ = train_val_test(ds, seed)
    if max_train and len(train) > max_train:
        rng = np.random.default_rng(seed)
        train = train.subset(np.sort(rng.choice(len(train), max_train, replace=False)))
    results = []
    for k, (tr, va) in enumerate(kfold_indices(train.labels, folds, seed)):
        console.print(f"[bold]fold {k + 1}/{folds}[/]")
        run = Path(out) / f"fold{k}"
        fit(cfg, run, console=console, splits=(train.subset(tr), train.subset(va)))
        lm = load_model(run)
        m = evaluate(lm.model, train.images[va], train.labels[va], lm.labels, lm.preprocess)
        results.append(m)
    labels = results[0]["labels"]
    summary = {key: _mean_std([r[key] for r in results]) for key in ("accuracy", "macro_f1", "weighted_f1")}
    summary["per_class"] = {lab: {met: _mean_std([r["per_class"][lab][met] for r in results])
                                  for met in ("precision", "recall", "f1")} for lab in labels}
    summary.update({"folds": folds, "model": model, "n": len(train)})
    return {"summary": summary, "folds": results}


def _run_summary(run: Path) -> dict:
    """What ``fit`` returns, read back from a finished run directory (history.csv + best.json)."""
    import csv
    import json

    hist, card = run / "history.csv", run / "best.json"
    if not hist.exists() or not card.exists():
        raise FileNotFoundError(f"{run}: not a finished run (expected history.csv and best.json from "
                                "`emotionlab train` or tools/device_train.py)")
    rows = list(csv.DictReader(hist.open()))
    c = json.loads(card.read_text())
    return {"params": c["params"], "best_val_acc": max(float(r["val_acc"]) for r in rows),
            **history_summary(rows), "hardware": c["training"]["hardware"], "label_set": c["label_set"]}


def input_size_study(model: str, data: Path, sizes: list[int], epochs: int, config: Path | None, out: Path,
                     max_train: int | None = None, from_runs: Path | None = None, console=None) -> dict:
    """Train the same architecture at several input sizes: parameters, accuracy, seconds per epoch.

    ``from_runs``: score runs trained elsewhere instead (``DIR/<model>-<size>``, e.g. a lent GPU's runs brought
    back by tools/device_train.py, whose data pack leaves PrivateTest here): the table then carries that
    machine's seconds per epoch and hardware, and the test accuracy measured here.
    ``console``: Rich console for progress (default: a new one on stderr).
    """
    from ..data.loader import eval_split, load_dataset
    from ..models.hub import load_model

    console = console or _stderr_console()

    rows = []
    for size in sizes:
        if from_runs is not None:
            run = Path(from_runs) / f"{model}-{size}"
            res = _run_summary(run)
            label_set = res["label_set"]
        else:
            cfg = _config(model, data, config, epochs=epochs, in_size=size, max_train=max_train)
            run = Path(out) / f"{model}-{size}"
            res = fit(cfg, run, console=console)
            label_set = cfg.label_set
        lm = load_model(run)
        if lm.card["in_size"] != size:
            raise ValueError(f"{run}: the model takes {lm.card['in_size']} px faces, the study row is {size} px")
        ds = load_dataset(data, size=size, label_set=label_set)
        test = eval_split(ds, "test")
        m = evaluate(lm.model, test.images, test.labels, lm.labels, lm.preprocess)
        rows.append({"size": size, "params": res["params"], "val_accuracy": res["best_val_acc"],
                     "test_accuracy": m["accuracy"], "test_macro_f1": m["macro_f1"],
                     "seconds_per_epoch": res["seconds_per_epoch"], "img_s": res["img_s"],
                     "hardware": res["hardware"], "epochs": res["epochs_run"]})
    return {"model": model, "rows": rows}
