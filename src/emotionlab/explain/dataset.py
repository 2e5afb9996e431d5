"""Dataset-level explanations: per-class average heat maps (seed 004 set such maps beside human emotion
maps) and a few correct / wrong examples per class.

Why average over the true class: the question is which face regions the model relies on for each emotion
in general, independent of single images; the examples then show where individual predictions go wrong.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.preprocess import prepare_crops, resize
from ..models.classifier import FaceClassifier
from .maps import METHODS, explain, overlay

COLUMN_TITLES = {"saliency": "mean saliency", "guided-backprop": "mean guided backprop", "gradcam": "mean Grad-CAM"}


def select_per_class(labels: np.ndarray, n_classes: int, per_class: int, seed: int = 0) -> dict[int, np.ndarray]:
    """Up to ``per_class`` indices of each class, drawn with a fixed seed (sorted, so runs are repeatable)."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) > per_class:
            idx = np.sort(rng.choice(idx, per_class, replace=False))
        out[c] = idx
    return out


def _maps(model, images_u8: np.ndarray, pre, method: str, targets: np.ndarray, batch_size: int) -> np.ndarray:
    out = []
    for i in range(0, len(images_u8), batch_size):
        x = torch.from_numpy(prepare_crops(images_u8[i:i + batch_size], pre))
        m, _, _ = explain(model, x, method, target=targets[i:i + batch_size].tolist())
        out.append(m)
    return np.concatenate(out) if out else np.zeros((0, pre.size, pre.size), np.float32)


def _unit(m: np.ndarray) -> np.ndarray:
    peak = float(m.max()) if m.size else 0.0
    return m / peak if peak > 0 else np.zeros_like(m)


def explain_dataset(loaded, images_u8: np.ndarray, labels: np.ndarray, out_dir: str | Path, per_class: int = 50,
                    methods: Sequence[str] = ("saliency", "gradcam"), examples: int = 3, seed: int = 0,
                    batch_size: int = 64, title: str = "") -> dict:
    """Write ``average_maps.png`` (rows = classes; columns = mean face, then one mean map per method),
    ``examples.png`` (``examples`` correct and wrong faces per class with the map of the predicted class),
    ``maps.npz`` and ``summary.json``; return the summary.
    """
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; use one of {', '.join(METHODS)}")
    if per_class < 1:
        raise ValueError(f"--per-class must be at least 1, got {per_class}")
    images_u8, labels = np.asarray(images_u8), np.asarray(labels).astype(np.int64)
    if images_u8.ndim != 3 or images_u8.dtype != np.uint8 or len(images_u8) != len(labels):
        raise ValueError(f"expected uint8 faces (N,H,W) and N labels, got {images_u8.shape} {images_u8.dtype} "
                         f"and {len(labels)} labels")
    names, pre = loaded.labels, loaded.preprocess
    if len(labels) and labels.max() >= len(names):
        raise ValueError(f"labels go up to {labels.max()} but the model has {len(names)} classes")
    if images_u8.shape[1:] != (pre.size, pre.size):
        images_u8 = np.stack([resize(im, pre.size) for im in images_u8])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen = select_per_class(labels, len(names), per_class, seed)
    order = np.concatenate([chosen[c] for c in range(len(names))]).astype(np.int64)
    imgs, ys = images_u8[order], labels[order]
    probs = (FaceClassifier(loaded, backend="torch").predict_proba(imgs, batch_size) if len(order)
             else np.zeros((0, len(names))))
    preds = probs.argmax(1) if len(order) else np.zeros(0, np.int64)
    maps = {m: _maps(loaded.model, imgs, pre, m, ys, batch_size) for m in methods}
    ex_method = "gradcam" if "gradcam" in methods else methods[-1]
    size = pre.size
    mean_face = np.zeros((len(names), size, size), np.float32)
    mean_maps = {m: np.zeros((len(names), size, size), np.float32) for m in methods}
    summary: dict = {"model": loaded.name, "methods": list(methods), "per_class": per_class, "seed": seed,
                     "n": len(order), "classes": {}}
    ex_rows: dict[int, list[tuple[np.ndarray, np.ndarray, str, bool]]] = {}
    for c, lab in enumerate(names):
        sel = np.flatnonzero(ys == c)
        if len(sel):
            mean_face[c] = imgs[sel].astype(np.float32).mean(0)
            for m in methods:
                mean_maps[m][c] = _unit(maps[m][sel].mean(0))
        correct, wrong = sel[preds[sel] == c], sel[preds[sel] != c]
        pick = list(correct[:examples]) + list(wrong[:examples])
        row = []
        if pick:
            # Map of the *predicted* class: for a wrong answer it shows what the mistake was based on.
            pm = _maps(loaded.model, imgs[pick], pre, ex_method, preds[pick], batch_size)
            for k, j in enumerate(pick):
                ok = bool(preds[j] == c)
                row.append((imgs[j], pm[k], f"{'ok' if ok else 'pred ' + names[preds[j]]} {probs[j].max():.2f}", ok))
        ex_rows[c] = row
        summary["classes"][lab] = {"n": len(sel), "accuracy": float((preds[sel] == c).mean()) if len(sel) else None,
                                   "examples_correct": [int(order[j]) for j in correct[:examples]],
                                   "examples_wrong": [{"index": int(order[j]), "predicted": names[preds[j]]}
                                                      for j in wrong[:examples]]}
    np.savez_compressed(out / "maps.npz", labels=np.array(names), mean_face=mean_face,
                        **{f"mean_{m.replace('-', '_')}": v for m, v in mean_maps.items()})
    _plot_average(names, mean_face, mean_maps, summary, out / "average_maps.png", title)
    _plot_examples(names, ex_rows, examples, ex_method, out / "examples.png", title)
    summary["files"] = {k: str(out / f) for k, f in (("average_maps", "average_maps.png"),
                                                      ("examples", "examples.png"), ("maps", "maps.npz"))}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _plot_average(names, mean_face, mean_maps, summary, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 1 + len(mean_maps)
    fig, axes = plt.subplots(len(names), cols, figsize=(2.0 * cols + 0.8, 1.9 * len(names)), squeeze=False)
    for c, lab in enumerate(names):
        info = summary["classes"][lab]
        acc = f"{info['accuracy']:.2f}" if info["accuracy"] is not None else "-"
        axes[c, 0].imshow(mean_face[c], cmap="gray", vmin=0, vmax=255)
        axes[c, 0].set_ylabel(f"{lab}\nn={info['n']} acc={acc}", fontsize=8)
        for k, (m, arr) in enumerate(mean_maps.items(), start=1):
            axes[c, k].imshow(overlay(mean_face[c].astype(np.uint8), arr[c])[:, :, ::-1])
        for k in range(cols):
            axes[c, k].set_xticks([])
            axes[c, k].set_yticks([])
            if c == 0:
                axes[c, k].set_title("mean face" if k == 0 else COLUMN_TITLES.get(list(mean_maps)[k - 1]), fontsize=9)
    fig.suptitle(f"{title + ': ' if title else ''}per-class mean maps (target = true class)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_examples(names, ex_rows, examples: int, method: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(1, 2 * examples)
    fig, axes = plt.subplots(len(names), cols, figsize=(1.7 * cols + 0.8, 1.9 * len(names)), squeeze=False)
    for c, lab in enumerate(names):
        row = ex_rows.get(c, [])
        correct = [r for r in row if r[3]]
        wrong = [r for r in row if not r[3]]
        cells = correct + [None] * (examples - len(correct)) + wrong + [None] * (examples - len(wrong))
        for k in range(cols):
            ax = axes[c, k]
            ax.set_xticks([])
            ax.set_yticks([])
            cell = cells[k] if k < len(cells) else None
            if cell is None:
                if k:  # keep the first column's axes for the class name
                    ax.axis("off")
            else:
                img, hm, cap, ok = cell
                ax.imshow(overlay(img, hm)[:, :, ::-1])
                ax.set_title(cap, fontsize=7, color="green" if ok else "red")
            if k == 0:
                ax.set_ylabel(lab, fontsize=8)
    fig.suptitle(f"{title + ': ' if title else ''}{examples} correct (left) and wrong (right) faces per class; "
                 f"{method} of the predicted class", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
