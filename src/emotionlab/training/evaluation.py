"""The ``evaluate`` command's engine: metrics of a trained or shipped model on a dataset split."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.markup import escape

from ..data.errors import DataError
from ..data.ferplus import wants_ferplus_labels
from ..data.folders import scan_folder
from ..data.labels import get_label_set
from .metrics import classification_metrics, plot_confusion, plot_reliability, summary_table


def _map_predictions(probs: np.ndarray, model_labels: list[str], data_labels: list[str]) -> np.ndarray:
    """Argmax over the model's classes that exist in the dataset's label set, as dataset indices."""
    if list(model_labels) == list(data_labels):
        return probs.argmax(1)
    cols = [i for i, lab in enumerate(model_labels) if lab in data_labels]
    if not cols:
        raise ValueError(f"model labels {model_labels} share no class with the data's {data_labels}")
    best = np.asarray(cols)[probs[:, cols].argmax(1)]
    return np.asarray([data_labels.index(model_labels[i]) for i in best])


def _detect_eval(loaded, model_ref: str, data: Path, split: str | None, ignore_unknown: bool,
                 align: bool = False, tta: str = "none"):
    """Folders of photos: largest detected face per image through the inference pipeline (``align``: crops
    turned with the head's roll, as ``predict --align``). -> (y_true, probs, data labels, errors, part name)."""
    from ..data.loader import split_indices
    from ..inference import FaceEmotionRecognizer

    ls = get_label_set(loaded.card.get("label_set", "fer7"))
    items = scan_folder(data, ls, ignore_unknown)
    idx, name = split_indices([s or "all" for _, _, s in items], [y for _, y, _ in items], split, source=str(data))
    items = [items[i] for i in idx]
    rec = FaceEmotionRecognizer(model=model_ref, align=align, tta=tta)
    y_true, probs, errors = [], [], []
    # the library's streaming path: decode guard, batched classification, bounded memory
    for r in rec.predict_iter(((str(p), p) for p, _, _ in items), batch=16):
        path, y, _ = items[r.index]
        if not r.ok:
            errors.append({"path": str(path), "error": r.detail})
            continue
        if not r.faces:
            errors.append({"path": str(path), "error": "no face detected"})
            continue
        f = max(r.faces, key=lambda f: f.box[2] * f.box[3])
        probs.append([f.scores[lab] for lab in rec.labels])
        y_true.append(y)
    return (np.asarray(y_true, np.int64), np.asarray(probs, np.float32).reshape(-1, len(rec.labels)),
            list(ls.labels), errors, name)


def ferplus_relabel(part, ferplus: Path, label_set=None):
    """Replace FER-2013 labels by the FER+ majority label (10 annotators, Barsoum et al. 2016).

    Kept: rows whose FER+ majority is one of ``label_set``'s classes (default: the dataset's; ``ferplus8``
    scores an 8-class FER+ model, contempt included). Excluded and counted (never silently): no majority,
    unknown / not-a-face, and classes outside the label set (contempt for FER7).
    """
    from ..data.ferplus import load_ferplus
    from ..data.labels import FERPLUS8

    if part.rows is None:
        raise DataError(part.source, "--ferplus needs FER-2013 rows (a fer2013.csv file), not an image folder")
    votes = load_ferplus(ferplus)
    if part.rows.max() >= len(votes):
        raise DataError(ferplus, f"has {len(votes)} rows but the data refers to row {part.rows.max()}")
    major = votes.majority[part.rows]
    label_set = label_set or part.label_set
    names = list(label_set.labels)
    fp8 = list(FERPLUS8.labels)
    mapped = np.array([names.index(fp8[m]) if m >= 0 and fp8[m] in names else -1 for m in major], dtype=np.int64)
    keep = np.flatnonzero(mapped >= 0)
    out = part.subset(keep)
    out.labels = mapped[keep].astype(np.int64)
    out.label_set = label_set
    info = {"source": str(ferplus), "kept": int(len(keep)), "excluded_no_majority": int((major < 0).sum()),
            "excluded_other_class": int(((major >= 0) & (mapped < 0)).sum()),
            "changed_vs_fer2013": int((part.labels[keep] != out.labels).sum())}
    return out, info


def scored_split(loaded, data: str | Path, split: str | None, ferplus: Path | None = None, skip_bad: bool = False,
                 ignore_unknown: bool = False):
    """-> (faces, relabel record or None): the split of ``data`` a model is scored on, relabelled by the FER+
    majority when ``ferplus`` is given (an 8-class FER+ model on FER-2013 rows requires it)."""
    part, relabel, _ = _scored_part(loaded, data, split, ferplus, skip_bad, ignore_unknown)
    return part, relabel


def _scored_part(loaded, data, split, ferplus, skip_bad, ignore_unknown):
    """:func:`scored_split`, plus the name of the part scored (``loader.split_indices``)."""
    from ..data.loader import load_dataset, scored_part

    label_set = loaded.card.get("label_set", "fer7")
    ds = load_dataset(data, size=loaded.card["in_size"], label_set=label_set, skip_bad=skip_bad,
                      ignore_unknown=ignore_unknown)
    part, name = scored_part(ds, split)
    fp8 = wants_ferplus_labels(part, label_set)
    if ferplus is not None:
        return (*ferplus_relabel(part, ferplus, get_label_set("ferplus8") if fp8 else None), name)
    if fp8:
        raise DataError(data, f"{loaded.name} is an 8-class FER+ model: score it against the FER+ labels of "
                              "these rows with --ferplus fer2013new.csv")
    return part, None, name


def _is_fer_rows(data: Path) -> bool:
    """Whether ``load_dataset`` reads ``data`` as FER-2013 rows (a CSV / packed file, or a folder holding one)."""
    if not data.is_dir():
        return True
    return any(p.exists() for p in (data / "fer2013.csv.gz", data / "fer2013.csv", data / "fer2013" / "fer2013.csv.gz"))


def check_evaluation_args(data: str | Path, detect: bool = False, occlude: str | None = None,
                          ferplus: Path | None = None, backend: str = "auto", align: bool = False) -> list[str]:
    """Refuse flag combinations ``evaluate`` cannot honour, before any model or data is loaded (ValueError /
    DataError naming the flags). -> the occlusion masks asked for (empty without ``occlude``)."""
    from ..data.occlusion import MASKS
    from ..explain.occlusion_study import OCCLUSIONS

    if backend not in ("auto", "onnx", "torch"):
        raise ValueError(f"unknown backend {backend!r}; use auto, onnx or torch")
    data = Path(data)
    masks: list[str] = []
    if occlude is not None:
        masks = [m.strip() for m in occlude.split(",") if m.strip()]
        bad = [m for m in masks if m not in OCCLUSIONS and m not in MASKS]
        if bad:
            raise ValueError(f"--occlude {occlude!r}: unknown mask(s) {bad}; known: {', '.join(OCCLUSIONS)}")
        if not masks:
            raise ValueError(f"--occlude {occlude!r}: no mask given; use e.g. none,forehead,eyes,mouth")
        if len(set(masks)) != len(masks):
            raise ValueError(f"--occlude {occlude!r} names a mask twice")
    if detect:
        if occlude is not None:
            raise ValueError("--occlude works on dataset crops, not with --detect")
        if ferplus is not None:
            raise ValueError("--ferplus relabels FER-2013 rows; --detect scores a folder of photos: give one of them")
        if not data.is_dir():
            raise DataError(data, "--detect needs a folder of photos (root/<class>/*.jpg)")
    if align and not detect:
        from ..data.utkface import is_utkface

        if not (data.is_dir() and is_utkface(data)):
            raise ValueError("--align turns detected faces by their eye keypoints: it needs --detect (a folder of "
                             "photos) or UTKFace photos; dataset crops are already upright")
    if ferplus is not None and not _is_fer_rows(data):
        raise DataError(data, "--ferplus needs FER-2013 rows (a fer2013.csv file), not an image folder")
    return masks


def run_evaluation(model: str, data: str | Path, split: str | None = "auto", tta: str = "none", detect: bool = False,
                   occlude: str | None = None, out: Path | None = None, batch_size: int = 256,
                   skip_bad: bool = False, ignore_unknown: bool = False, quiet: bool = False,
                   ferplus: Path | None = None, backend: str = "auto", console=None, align: bool = False) -> dict:
    """``split``: ``auto`` (default) scores the data's test split (FER-2013 PrivateTest, a folder's ``test/``),
    or all of data without splits; ``all``, a split name, or on data without splits ``test`` / ``val`` for the
    seeded held-out part that training held out (``data.loader.split_indices``). The result's ``split`` names
    the part scored. ``backend``: ``auto`` scores a model with a shipped int8 graph through ONNX Runtime (as the
    pipeline runs it) and any other model with PyTorch (their ONNX export agrees to 1e-3); ``onnx`` / ``torch``
    force one. ``console``: a Rich console for the tables (default: a new one on stderr). ``align``: photos
    (``detect``, UTKFace) are cropped turned with the head's roll from the eye keypoints, one code path with
    ``predict --align`` and with training on photos (``TrainConfig.align``)."""
    from ..models.hub import load_model

    masks = check_evaluation_args(data, detect, occlude, ferplus, backend, align)  # before any loading
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    loaded = load_model(model)
    use_onnx = backend == "onnx" or (backend == "auto" and bool(loaded.card.get("onnx_graph")))
    data = Path(data)
    from ..data.utkface import is_utkface

    if is_utkface(data) and not detect and not occlude:  # attribute model: accuracy by race / age band
        from .fairness import evaluate_utkface

        res = evaluate_utkface(loaded, data, split, tta, batch_size, quiet, console, skip_bad=skip_bad,
                               align=True if align else None)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            plot_confusion(res["confusion_matrix"], res["labels"], out / "confusion.png",
                           f"{loaded.name} {res['split']} acc {res['accuracy']:.3f}")
        return res
    t0 = time.perf_counter()
    errors: list = []
    if detect:
        y_true, probs, data_labels, errors, split = _detect_eval(loaded, model, data, split, ignore_unknown,
                                                                 align, tta)
        images = None
    else:
        part, relabel, split = _scored_part(loaded, data, split, ferplus, skip_bad, ignore_unknown)
        images, y_true, data_labels = part.images, part.labels, list(part.label_set.labels)
        import torch

        from ..models.classifier import FaceClassifier

        clf = FaceClassifier(loaded, backend="onnx" if use_onnx else "torch", threads=torch.get_num_threads(),
                             tta=tta)
        probs = clf.predict_proba(images, batch_size)
    elapsed = time.perf_counter() - t0
    y_pred = _map_predictions(probs, loaded.labels, data_labels) if len(probs) else np.zeros(0, np.int64)
    res = classification_metrics(y_true, y_pred, data_labels)
    res.update({"model": loaded.name, "weights": str(loaded.weights), "data": str(data), "split": split, "tta": tta,
                "backend": "onnxruntime" if use_onnx and not detect else ("pipeline" if detect else "torch"),
                "ms_per_face": 1000 * elapsed / max(len(y_true), 1)})
    cal = None
    if len(probs) and list(loaded.labels) == list(data_labels):  # scores over the data's own classes
        from ..models.calibration import card_calibration_metrics

        cal = card_calibration_metrics(probs, y_true, loaded.card)
        res.update(cal)
    if not detect and ferplus is not None:
        res["labels_from"] = relabel
    if detect:
        res["align"] = bool(align)
        res["errors"] = errors
        res["n_errors"] = len(errors)
    if not quiet:
        console.print(summary_table(res, escape(f"{loaded.name} on {data.name} [{split}] tta={tta}")))
        if errors:
            console.print(f"[yellow]{len(errors)} images had no usable face or could not be read[/]")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plot_confusion(res["confusion_matrix"], data_labels, out / "confusion.png",
                       f"{loaded.name} {split} acc {res['accuracy']:.3f}")
        if cal is not None:
            plot_reliability(cal, out / "reliability.png", f"{loaded.name} {split}")
    if occlude:
        from ..explain.occlusion_study import occlusion_table

        table = occlusion_table(loaded, images, y_true, masks, tta=tta, out_dir=out)
        for k in table:
            table[k].update({"model": loaded.name, "data": str(data), "split": split})
        return table
    return res
