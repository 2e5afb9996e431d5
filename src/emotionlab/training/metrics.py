"""Classification metrics with scikit-learn, in the JSON layout every evaluate command prints."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str] | tuple[str, ...]) -> dict:
    """accuracy, macro / weighted F1, per-class precision/recall/F1/support and the confusion matrix.

    ``macro_f1`` averages over the classes present in ``y_true`` (CK+ has no neutral: its F1 would be a 0
    that no model can raise); ``macro_f1_all_labels`` averages over every label, absent ones included (their
    F1 is 0), and ``macro_f1_classes`` names the classes ``macro_f1`` averaged. With every class present (the
    FER-2013 splits) the two are equal.
    """
    k = list(range(len(labels)))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=k, zero_division=0)
    present = [i for i in k if s[i] > 0]
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
        if present else 0.0,
        "macro_f1_all_labels": float(f1_score(y_true, y_pred, labels=k, average="macro", zero_division=0)),
        "macro_f1_classes": [labels[i] for i in present],
        "weighted_f1": float(f1_score(y_true, y_pred, labels=k, average="weighted", zero_division=0)),
        "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                            "support": int(s[i])} for i, lab in enumerate(labels)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=k).tolist(),
        "labels": list(labels),
        "n": int(len(y_true)),
    }


def plot_confusion(cm: list[list[int]], labels: list[str], path, title: str = "") -> None:
    """Row-normalized confusion matrix PNG (recall on the diagonal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm_arr = np.asarray(cm, dtype=float)
    norm = cm_arr / np.maximum(cm_arr.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(labels), 1 + 0.7 * len(labels)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reliability(report: dict, path, title: str = "") -> None:
    """Reliability diagram (``models.calibration.calibration_report``): accuracy against top-score confidence
    per bin, raw and calibrated, with the diagonal a calibrated model follows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="calibrated")
    for key, name, color in (("reliability_uncalibrated", f"raw (ECE {report['ece_uncalibrated']:.3f})", "C3"),
                             ("reliability", f"T={report['temperature']:g} (ECE {report['ece']:.3f})", "C0")):
        r = report[key]
        pts = [(c, a) for c, a, n in zip(r["confidence"], r["accuracy"], r["count"]) if n]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, color=color, label=name)
    ax.set_xlabel("confidence (top score)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_table(res: dict, title: str):
    """The per-class table of :func:`classification_metrics` output, for the terminal."""
    from rich.table import Table

    t = Table(title=title)
    for c in ("class", "precision", "recall", "f1", "support"):
        t.add_column(c, justify="left" if c == "class" else "right")
    for lab, m in res["per_class"].items():
        t.add_row(lab, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    t.add_row("[bold]overall", "", f"acc {res['accuracy']:.4f}", f"macro {res['macro_f1']:.4f}", str(res["n"]))
    if res.get("ece") is not None:  # expected calibration error of the scores, and without the temperature
        t.add_row("calibration", f"T {res.get('temperature', 1.0):g}", f"ECE {res['ece']:.3f}",
                  f"raw {res['ece_uncalibrated']:.3f}", "")
    over, labels = res.get("macro_f1_classes"), res.get("labels") or list(res["per_class"])
    if over is not None and len(over) < len(labels):  # say which classes the macro average is over
        t.caption = (f"macro-F1 over the {len(over)} classes present in the data; over all {len(labels)} labels "
                     f"(absent ones score 0): {res['macro_f1_all_labels']:.4f}")
    return t
