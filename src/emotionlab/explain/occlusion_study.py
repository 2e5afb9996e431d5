"""Seed 004's occlusion study: how much accuracy survives when the forehead, the eyes or the mouth is hidden.

``occlusion_table`` is what ``emotionlab evaluate --occlude none,forehead,eyes,mouth`` calls: for each mask
it blacks out that region of every face crop (``emotionlab.data.occlusion``), predicts, and computes the
same metrics as ``evaluate`` plus per-class accuracy (recall). ``occlusion_markdown`` and
``plot_occlusion`` turn the table into seed 004's table and a grouped bar chart.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.occlusion import apply_mask, get_mask, medical_mask_from_landmarks
from ..data.preprocess import resize

# Where BlazeFace's first four keypoints (right eye, left eye, nose tip, mouth) sit on an average FER-2013
# crop, as fractions of the side: landmark masks on crops that had no detector use this template.
TEMPLATE_LANDMARKS = np.array([[0.32, 0.40], [0.68, 0.40], [0.50, 0.60], [0.50, 0.78]], np.float32)
OCCLUSIONS = ("none", "forehead", "eyes", "mouth", "medical")


def face_occlusion(name: str, size: int, landmarks: np.ndarray | None = None) -> tuple[np.ndarray | None, str]:
    """Boolean (size, size) mask for one face crop: seed 004's bands (``forehead``, ``eyes``, ``mouth``), or
    ``medical`` (a surgical-mask shape) from the face's landmarks in crop pixels, else from the template of
    an average FER crop. ``none`` gives None. Returns (mask, what it was built from)."""
    if name == "medical":
        if landmarks is not None and len(landmarks) >= 4:
            return medical_mask_from_landmarks(size, size, landmarks), "landmarks"
        return medical_mask_from_landmarks(size, size, TEMPLATE_LANDMARKS * size), "template"
    if name not in OCCLUSIONS and name != "lower":
        raise KeyError(f"unknown occlusion {name!r}; known: {', '.join(OCCLUSIONS)}")
    return get_mask(name, size, size), ("band" if name != "none" else "")


def _check_inputs(images_u8: np.ndarray, labels: np.ndarray, n_classes: int, masks: Sequence[str]) -> None:
    if images_u8.ndim != 3:
        raise ValueError(f"occlusion_table expects uint8 face crops (N,H,W), got shape {images_u8.shape}")
    if images_u8.dtype != np.uint8:
        raise ValueError(f"occlusion_table expects uint8 face crops, got dtype {images_u8.dtype}")
    if len(images_u8) == 0:
        raise ValueError("occlusion_table got no images")
    if len(labels) != len(images_u8):
        raise ValueError(f"{len(images_u8)} images but {len(labels)} labels")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must be class indices 0..{n_classes - 1}, found {labels.min()}..{labels.max()}")
    if not masks:
        raise ValueError("no masks given; use e.g. none,forehead,eyes,mouth")
    if len(set(masks)) != len(masks):
        raise ValueError(f"mask list {list(masks)} names a mask twice")


def occlusion_table(loaded, images_u8: np.ndarray, labels: np.ndarray, masks: list[str], tta: str = "none",
                    out_dir: str | Path | None = None, batch_size: int = 256, fill: int = 0) -> dict:
    """Metrics for each occlusion mask -> ``{"none": {...evaluate keys..., "per_class_accuracy": {...}}, ...}``.

    ``loaded`` is a ``emotionlab.models.hub.LoadedModel`` (model, labels, preprocess). Masks: ``none``,
    ``forehead``, ``eyes``, ``mouth`` (seed 004's bands) and ``medical`` (surgical-mask template). Images are uint8 face
    crops; they are resized to the model's input size first, and each mask is drawn at that size, so the
    regions are the same fraction of the face for every model. With ``out_dir``, also writes
    ``occlusion.md``, ``occlusion.png`` and ``occlusion.json``. ``fill`` is the grey level of the hidden
    region: 0 (black patch, seed 004) by default; ``round(255 * preprocess.mean)`` matches the fill of the
    training-time occlusion augmentation (0 in normalized units).
    """
    from ..models.classifier import FaceClassifier  # lazy: keeps `emotionlab.explain` light to import
    from ..training.metrics import classification_metrics

    images_u8 = np.asarray(images_u8)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    names = list(loaded.labels)
    masks = [m.strip() for m in masks]
    _check_inputs(images_u8, labels, len(names), masks)
    pre = loaded.preprocess
    if images_u8.shape[1:] != (pre.size, pre.size):
        images_u8 = np.stack([resize(im, pre.size) for im in images_u8])
    mask_arrays = {m: face_occlusion(m, pre.size)[0] for m in masks}  # unknown names fail before any work
    clf = FaceClassifier(loaded, backend="torch", tta=tta)
    table: dict[str, dict] = {}
    for name in masks:
        imgs = apply_mask(images_u8, mask_arrays[name], fill=fill)
        probs = clf.predict_proba(imgs, batch_size)
        met = classification_metrics(labels, probs.argmax(1), names)
        met["per_class_accuracy"] = {lab: met["per_class"][lab]["recall"] for lab in names}
        met["fill"] = int(fill)
        met["masked_fraction"] = float(mask_arrays[name].mean()) if mask_arrays[name] is not None else 0.0
        table[name] = met
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        title = f"{getattr(loaded, 'name', 'model')}: accuracy under occlusion (n={len(labels)}, tta={tta})"
        (out / "occlusion.md").write_text(occlusion_markdown(table, title=title))
        plot_occlusion(table, out / "occlusion.png", title=title)
        (out / "occlusion.json").write_text(json.dumps(table, indent=2))
    return table


def occlusion_markdown(table: dict, title: str | None = None, digits: int = 1) -> str:
    """Seed 004's table: one row per mask; overall accuracy, weighted F1, then per-class accuracy (%).

    A column ``Δ acc`` gives the change against the unmasked row when ``none`` is in the table.
    """
    if not table:
        raise ValueError("empty occlusion table")
    first = next(iter(table.values()))
    labels = list(first["labels"])
    base = table.get("none", {}).get("accuracy")
    head = ["mask", "accuracy", "weighted F1"] + (["Δ acc"] if base is not None else []) + labels
    lines = [f"### {title}", ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]

    def pct(v: float) -> str:
        return f"{100 * v:.{digits}f}"

    for name, met in table.items():
        pca = met.get("per_class_accuracy") or {lab: met["per_class"][lab]["recall"] for lab in labels}
        row = [name, pct(met["accuracy"]), pct(met["weighted_f1"])]
        if base is not None:
            row.append(f"{100 * (met['accuracy'] - base):+.{digits}f}")
        row += [pct(pca[lab]) for lab in labels]
        lines.append("| " + " | ".join(row) + " |")
    n = first.get("n")
    lines += ["", f"Accuracy, weighted F1 and per-class accuracy (recall) in %, n = {n} faces per row."]
    return "\n".join(lines) + "\n"


def plot_occlusion(table: dict, path: str | Path, title: str = "") -> None:
    """Grouped bar chart: per-class accuracy (and overall) for each mask, one bar colour per mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    masks = list(table)
    labels = list(next(iter(table.values()))["labels"])
    groups = ["overall"] + labels
    width = 0.8 / max(1, len(masks))
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(groups), 4))
    for i, m in enumerate(masks):
        met = table[m]
        pca = met.get("per_class_accuracy") or {lab: met["per_class"][lab]["recall"] for lab in labels}
        vals = [met["accuracy"]] + [pca[lab] for lab in labels]
        ax.bar(x + (i - (len(masks) - 1) / 2) * width, vals, width, label=m)
    ax.set_xticks(x, groups, rotation=30, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(title="mask", fontsize=8, ncols=min(4, len(masks)))
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
