"""Find likely label errors in a face dataset: out-of-fold probabilities, confident learning, conflicting
duplicates and outliers.

Why out-of-fold: a model scored on the faces it was trained on has memorised their labels, wrong ones
included, so its disagreement says little. Every face is scored by a model that never saw it: k folds of a
small, fast model (HOG features + logistic regression: ~15 s a fold on FER-2013 Training on one CPU core), or
a given model on data it was not trained on. Confident learning (Northcutt et al. 2021, the ``cleanlab``
package) then ranks the faces whose given label the out-of-fold probabilities contradict beyond the per-class
confusion they expect. Two more kinds of flag come from the data itself: near-duplicate groups whose members
carry different labels (:mod:`emotionlab.data.dedup`) and outliers (blank images, rows that could not be read,
and faces far from every other face in feature space).

The result is :class:`LabelIssues`; :func:`write_issues_csv` writes ``label_issues.csv`` (``index, given,
suggested, score, kind`` plus ``split``, ``top3`` for the review page) and :func:`contact_sheet` a PNG of the
top flags per class.
"""
from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.fer2013 import FaceDataset

Progress = Callable[[str], None]
KINDS = ("label", "duplicate", "outlier")
#: A face whose pixels vary less than this (standard deviation, 0..255) is blank: no face to label.
BLANK_STD = 3.0
ISSUE_COLUMNS = ("index", "given", "suggested", "score", "kind", "split", "top3")


def hog_features(images: np.ndarray, side: int = 48) -> np.ndarray:
    """HOG descriptors (Dalal & Triggs 2005; OpenCV, 16 px blocks, 8 px cells, 9 bins): 900 floats per 48x48
    face. Cheap, and they carry the edge structure of a face (mouth, brows) that a linear model can use."""
    import cv2

    hog = cv2.HOGDescriptor((side, side), (16, 16), (8, 8), (8, 8), 9)
    out = np.empty((len(images), len(hog.compute(np.zeros((side, side), np.uint8)).ravel())), np.float32)
    for i, im in enumerate(images):
        if im.shape != (side, side):
            im = cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA)
        out[i] = hog.compute(np.ascontiguousarray(im, np.uint8)).ravel()
    return out


def _small_model(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # C=0.05: strong L2, chosen on FER-2013 (46 % held-out accuracy; weaker regularization overfits HOG)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.05, random_state=seed))


def out_of_fold_probs(features: np.ndarray, labels: np.ndarray, n_classes: int, folds: int = 5, seed: int = 0,
                      progress: Progress | None = None) -> np.ndarray:
    """(N, n_classes) probabilities, each row from the fold model that did not train on it."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=n_classes)
    if folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    if counts[counts > 0].min() < folds:
        small = [int(k) for k in np.flatnonzero((counts > 0) & (counts < folds))]
        raise ValueError(f"--folds {folds}: class(es) {small} have fewer than {folds} images; use fewer folds")
    if (counts > 0).sum() < 2:
        raise ValueError("every image has the same label: there is nothing to tell apart")
    probs = np.zeros((len(labels), n_classes), np.float32)
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (tr, va) in enumerate(skf.split(features, labels)):
        if progress:
            progress(f"fold {k + 1}/{folds}")
        m = _small_model(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs "did not converge" at max_iter: the held-out fit is what counts
            m.fit(features[tr], labels[tr])
        probs[np.ix_(va, m.classes_)] = m.predict_proba(features[va])
    return probs


def model_probs(ds: FaceDataset, model: str, batch_size: int = 256) -> tuple[np.ndarray, dict]:
    """Probabilities of a given model over ``ds``'s classes (matched by name; other classes dropped and the
    rest renormalised), and its card (to check what it was trained on)."""
    from ..data.preprocess import resize
    from ..models.classifier import FaceClassifier
    from ..models.hub import load_card

    card = load_card(model)
    clf = FaceClassifier(model)
    names = list(ds.label_set.labels)
    missing = [n for n in names if n not in clf.labels]
    if missing:
        raise ValueError(f"--model {model}: its classes {clf.labels} lack {missing} of the data's {names}")
    side = int(clf.preprocess.size) if hasattr(clf.preprocess, "size") else ds.images.shape[1]
    imgs = ds.images if ds.images.shape[1] == side else np.stack([resize(im, side) for im in ds.images])
    p = clf.predict_proba(imgs, batch_size=batch_size)[:, [clf.labels.index(n) for n in names]]
    p = p / np.clip(p.sum(1, keepdims=True), 1e-12, None)
    return p.astype(np.float32), card


def trained_on(card: dict, data: str | os.PathLike, split: str | None) -> str | None:
    """A warning when the model card says it was trained on this data (same file name) and split."""
    tr = card.get("training") or {}
    src = str(tr.get("data") or "")
    if not src or Path(src).name != Path(data).name:
        return None
    if split in (None, "", "Training", "train"):
        return (f"the model card says it was trained on {src}; its probabilities on the training rows of the same "
                "file are not out-of-sample, so it will miss label errors it memorised")
    return None


@dataclass
class LabelIssues:
    """Flags over a dataset; arrays are per flag, ``pos`` indexes the dataset the flagger saw."""

    pos: np.ndarray
    given: np.ndarray
    suggested: np.ndarray
    score: np.ndarray
    kind: np.ndarray
    pred_probs: np.ndarray  # (N, C) for every face, not only the flagged ones
    summary: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pos)


def _duplicate_flags(ds: FaceDataset, probs: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """Members of near-duplicate groups whose labels disagree: the whole group is suspect. Suggested label:
    the class the group's summed probabilities favour; score: 1 - P(given)."""
    from ..data.dedup import find_duplicates

    res = find_duplicates(ds, near=True, threshold=threshold)
    pos, sug = [], []
    g = res.group
    for gid in np.unique(g[g >= 0]):
        idx = np.flatnonzero(g == gid)
        if len(set(ds.labels[idx].tolist())) < 2:
            continue
        best = int(probs[idx].sum(0).argmax())
        pos.extend(idx.tolist())
        sug.extend([best] * len(idx))
    return np.asarray(pos, np.int64), np.asarray(sug, np.int64)


def _outlier_flags(ds: FaceDataset, features: np.ndarray, quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """Blank images (score 1) and the ``quantile`` of faces farthest from their neighbours in feature space
    (cleanlab's OutOfDistribution: mean distance to the k nearest neighbours; score 1 - its score)."""
    std = ds.images.reshape(len(ds), -1).std(1)
    blank = np.flatnonzero(std < BLANK_STD)
    score = np.zeros(len(ds))
    score[blank] = 1.0
    pos = set(blank.tolist())
    if quantile > 0 and len(ds) > 20:
        from cleanlab.outlier import OutOfDistribution

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ood = OutOfDistribution().fit_score(features=features.astype(np.float32), verbose=False)
        far = 1.0 - ood
        cut = np.quantile(far, 1.0 - quantile)
        for i in np.flatnonzero(far >= cut):
            pos.add(int(i))
            score[i] = max(score[i], float(far[i]))
    p = np.asarray(sorted(pos), np.int64)
    return p, score[p]


def find_label_issues(ds: FaceDataset, folds: int = 5, seed: int = 0, pred_probs: np.ndarray | None = None,
                      dup_threshold: int = 4, outlier_quantile: float = 0.002,
                      progress: Progress | None = None) -> LabelIssues:
    """Flag likely wrong labels (``label``), conflicting near duplicates (``duplicate``) and outliers
    (``outlier``) in ``ds``. ``pred_probs``: a given model's probabilities; None trains ``folds`` small models."""
    from cleanlab.filter import find_label_issues as cl_find
    from cleanlab.rank import get_label_quality_scores

    n_classes = len(ds.label_set)
    if len(ds) < 2 * max(folds, 2):
        raise ValueError(f"{len(ds)} images are too few to find label issues (need at least {2 * max(folds, 2)})")
    given_probs = pred_probs is not None
    if progress:
        progress("features")
    feats = hog_features(ds.images)
    if pred_probs is None:
        pred_probs = out_of_fold_probs(feats, ds.labels, n_classes, folds, seed, progress)
    pred_probs = np.asarray(pred_probs, np.float32)
    if pred_probs.shape != (len(ds), n_classes) or not np.isfinite(pred_probs).all():
        raise ValueError(f"pred_probs have shape {pred_probs.shape}, expected ({len(ds)}, {n_classes}) and finite")
    if progress:
        progress("confident learning")
    present = np.flatnonzero(np.bincount(ds.labels, minlength=n_classes) > 0)
    # cleanlab wants every class present: work over the classes the data has, map back after
    remap = np.full(n_classes, -1)
    remap[present] = np.arange(len(present))
    sub = pred_probs[:, present]
    sub = sub / np.clip(sub.sum(1, keepdims=True), 1e-12, None)
    y = remap[ds.labels]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = np.asarray(cl_find(y, sub, return_indices_ranked_by="self_confidence"), np.int64)
        quality = get_label_quality_scores(y, sub, method="self_confidence")
    lab_pos = ranked
    lab_sug = present[sub[ranked].argmax(1)] if len(ranked) else np.zeros(0, np.int64)
    lab_score = 1.0 - quality[ranked]
    if progress:
        progress("duplicates")
    dup_pos, dup_sug = _duplicate_flags(ds, pred_probs, dup_threshold)
    dup_score = 1.0 - pred_probs[dup_pos, ds.labels[dup_pos]] if len(dup_pos) else np.zeros(0)
    if progress:
        progress("outliers")
    out_pos, out_score = _outlier_flags(ds, feats, outlier_quantile)
    out_sug = pred_probs[out_pos].argmax(1) if len(out_pos) else np.zeros(0, np.int64)
    pos = np.concatenate([lab_pos, dup_pos, out_pos]).astype(np.int64)
    kind = np.array(["label"] * len(lab_pos) + ["duplicate"] * len(dup_pos) + ["outlier"] * len(out_pos))
    issues = LabelIssues(pos=pos, given=ds.labels[pos].astype(np.int64),
                         suggested=np.concatenate([lab_sug, dup_sug, out_sug]).astype(np.int64),
                         score=np.concatenate([lab_score, dup_score, out_score]).astype(np.float64),
                         kind=kind, pred_probs=pred_probs)
    oof_acc = float((pred_probs.argmax(1) == ds.labels).mean())
    issues.summary = {"n": int(len(ds)), "flags": {k: int((kind == k).sum()) for k in KINDS},
                      "flagged_faces": int(len(np.unique(pos))), "probs_accuracy": round(oof_acc, 4),
                      "folds": None if given_probs else folds}
    return issues


def face_ids(ds: FaceDataset) -> list[str]:
    """How ``label_issues.csv`` names each face: the 0-based data row of a CSV, the file path in a folder."""
    if ds.paths:
        return list(ds.paths)
    rows = ds.rows if ds.rows is not None else np.arange(len(ds))
    return [str(int(r)) for r in rows]


def top3_text(p: np.ndarray, names: tuple[str, ...] | list[str]) -> str:
    top = np.argsort(-p)[:3]
    return ";".join(f"{names[int(k)]}:{float(p[k]):.3f}" for k in top)


def write_issues_csv(path: str | os.PathLike, ds: FaceDataset, issues: LabelIssues) -> Path:
    """``label_issues.csv``: one row per flag, each kind ranked by score (highest first), labels as names.
    Written to a temporary file and renamed, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = ds.label_set.labels
    ids = face_ids(ds)
    order = sorted(range(len(issues)), key=lambda i: (KINDS.index(str(issues.kind[i])), -issues.score[i]))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(ISSUE_COLUMNS)
        for i in order:
            p = int(issues.pos[i])
            w.writerow([ids[p], names[int(issues.given[i])], names[int(issues.suggested[i])],
                        f"{float(issues.score[i]):.4f}", issues.kind[i], ds.usage[p],
                        top3_text(issues.pred_probs[p], names)])
    os.replace(tmp, path)
    return path


def contact_sheet(path: str | os.PathLike, ds: FaceDataset, issues: LabelIssues, per_class: int = 8,
                  kind: str = "label") -> Path:
    """A PNG grid: one row per given class, its ``per_class`` highest-scored flags of ``kind``, each titled
    ``given -> suggested``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    names = ds.label_set.labels
    sel = np.flatnonzero(issues.kind == kind)
    fig, axes = plt.subplots(len(names), per_class, figsize=(per_class * 1.3, len(names) * 1.5), squeeze=False)
    for c, name in enumerate(names):
        mine = sel[issues.given[sel] == c]
        mine = mine[np.argsort(-issues.score[mine])][:per_class]
        for j in range(per_class):
            ax = axes[c, j]
            ax.axis("off")
            if j < len(mine):
                i = mine[j]
                ax.imshow(ds.images[int(issues.pos[i])], cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"{names[int(issues.suggested[i])]} {issues.score[i]:.2f}", fontsize=7)
        axes[c, 0].text(-0.15, 0.5, name, transform=axes[c, 0].transAxes, ha="right", va="center", fontsize=9)
    fig.suptitle(f"top {kind} flags per given class (title: suggested label, score)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)
    return path
