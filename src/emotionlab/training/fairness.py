"""Group accuracies for attribute models (apparent gender on UTKFace): by race, by age band, gaps, adults.

``emotionlab evaluate --model gender --data UTKFACE_DIR`` lands here (``run_evaluation`` routes UTKFace
folders to :func:`evaluate_utkface`). The split is rebuilt from the seed and fractions in the model card,
and its MD5 digest is compared with the card's, so the numbers are on the held-out test part the model was
selected without.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..data.utkface import ADULT_AGE, AGE_BANDS, GENDERS, RACES, age_band, split_digest
from .metrics import classification_metrics


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k / n (honest for small groups; (0, 1) for n = 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def _group(correct: np.ndarray, mask: np.ndarray) -> dict:
    n, k = int(mask.sum()), int(correct[mask].sum())
    lo, hi = wilson(k, n)
    return {"accuracy": k / n if n else None, "n": n, "ci95": [round(lo, 4), round(hi, 4)]}


def _gap(groups: dict) -> dict:
    have = {k: v for k, v in groups.items() if v["n"] and v["accuracy"] is not None}
    if not have:
        return {"best": None, "worst": None, "gap": None}
    best = max(have, key=lambda k: have[k]["accuracy"])
    worst = min(have, key=lambda k: have[k]["accuracy"])
    return {"best": best, "worst": worst, "gap": have[best]["accuracy"] - have[worst]["accuracy"]}


def group_report(y_true, y_pred, age, race) -> dict:
    """Accuracy overall, by race, by age band, adults (20+) / children, by gender, and best-worst gaps."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    age, race = np.asarray(age), np.asarray(race)
    correct = y_true == y_pred
    bands = np.asarray([age_band(int(a)) for a in age])
    adults = age >= ADULT_AGE
    by_race = {name: _group(correct, race == i) for i, name in enumerate(RACES)}
    by_age = {name: _group(correct, bands == name) for name, _, _ in AGE_BANDS}
    by_race_adults = {name: _group(correct, (race == i) & adults) for i, name in enumerate(RACES)}
    by_gender = {name: _group(correct, y_true == i) for i, name in enumerate(GENDERS)}
    gaps = {"race": _gap(by_race), "age": _gap(by_age), "race_adults": _gap(by_race_adults),
            "gender": _gap(by_gender)}
    return {
        "accuracy": float(correct.mean()) if len(correct) else 0.0,
        "adults_accuracy": _group(correct, adults)["accuracy"],
        "adults": _group(correct, adults),
        "children": _group(correct, ~adults),
        "by_race": by_race,
        "by_age": by_age,
        "by_race_adults": by_race_adults,
        "by_gender": by_gender,
        "gap_race": gaps["race"]["gap"],
        "gap_age": gaps["age"]["gap"],
        "gap": max(g["gap"] for g in (gaps["race"], gaps["age"]) if g["gap"] is not None)
        if any(g["gap"] is not None for g in (gaps["race"], gaps["age"])) else None,
        "gaps": gaps,
    }


def group_table(res: dict, title: str):
    from rich.table import Table

    t = Table(title=title)
    for c in ("group", "accuracy", "95% CI", "n"):
        t.add_column(c, justify="left" if c == "group" else "right")

    def row(name, g):
        acc = f"{g['accuracy']:.4f}" if g["accuracy"] is not None else "-"
        t.add_row(name, acc, f"{g['ci95'][0]:.3f}-{g['ci95'][1]:.3f}", str(g["n"]))

    row("[bold]adults (20+)", res["adults"])
    row("[bold]children (0-19)", res["children"])
    for k, g in res["by_race"].items():
        row(f"race {k}", g)
    for k, g in res["by_age"].items():
        row(f"age {k}", g)
    for k, g in res["by_gender"].items():
        row(f"gender {k}", g)
    t.add_row("[bold]overall", f"{res['accuracy']:.4f}", "", str(res["n"]))
    t.add_row("gap race / age", f"{res['gap_race']:.4f} / {res['gap_age']:.4f}", "", "")
    return t


def utkface_as_trained(loaded, data: str | Path, skip_bad: bool = False, align: bool | None = None):
    """UTKFace split and cropped exactly as ``loaded`` was trained (its card's split seed / fractions and crop);
    ``align`` True / False overrides the card's roll alignment. -> ``UTKFaceData``."""
    from ..data.errors import DataError
    from ..data.utkface import load_utkface
    from ..inference.detectors import utkface_detector

    tr = loaded.card.get("training", {})
    sp = tr.get("split") or {}
    crop = (tr.get("crop") or {}).get("mode", "detect")
    if align is None:
        align = bool((tr.get("crop") or {}).get("align", False))
    if align and crop != "detect":
        raise DataError(data, f"{loaded.name} was trained on {crop} crops; --align turns detected faces only")
    return load_utkface(data, size=loaded.preprocess.size, crop=crop, seed=int(sp.get("seed", 0)),
                        val_frac=float(sp.get("val_frac", 0.1)), test_frac=float(sp.get("test_frac", 0.2)),
                        skip_bad=skip_bad, detector=utkface_detector() if crop == "detect" else None, align=align)


def evaluate_utkface(loaded, data: str | Path, split: str = "test", tta: str = "none", batch_size: int = 256,
                     quiet: bool = False, console=None, skip_bad: bool = False, align: bool | None = None) -> dict:
    """Gender accuracy of ``loaded`` on a UTKFace split, with the group report (see :func:`group_report`).
    Faces are cropped as the model was trained (its card's crop); ``align`` True / False overrides the roll
    alignment."""
    from ..data.errors import DataError
    from ..models.classifier import FaceClassifier

    if list(loaded.labels) != list(GENDERS):
        raise DataError(data, f"UTKFace is scored for apparent gender {list(GENDERS)}; model {loaded.name} "
                              f"predicts {loaded.labels} (use --model gender)")
    u = utkface_as_trained(loaded, data, skip_bad, align)
    split = "test" if split in (None, "auto", "PrivateTest", "privatetest") else split
    m = u.mask(split)
    t0 = time.perf_counter()
    probs = FaceClassifier(loaded, backend="torch", tta=tta).predict_proba(u.images[m], batch_size)
    elapsed = time.perf_counter() - t0
    y_true, y_pred = u.gender[m], probs.argmax(1)
    res = classification_metrics(y_true, y_pred, list(GENDERS))
    res.update(group_report(y_true, y_pred, u.age[m], u.race[m]))
    if len(y_true):
        from ..models.calibration import card_calibration_metrics

        res.update(card_calibration_metrics(probs, y_true, loaded.card))
    digest = split_digest(u.md5[m]) if split == "test" else None
    expected = (loaded.card.get("training", {}).get("split") or {}).get("test_md5_sha1")
    res.update({"model": loaded.name, "weights": str(loaded.weights), "data": str(data), "split": split, "tta": tta,
                "ms_per_face": 1000 * elapsed / max(len(y_true), 1),
                "crop": u.report.get("crop"), "split_info": u.report.get("split"),
                "held_out": bool(split == "test" and expected is not None and digest == expected),
                "data_report": {k: v for k, v in u.report.items() if k in (
                    "files", "unique_images", "duplicate_groups", "gender_conflict_groups", "gender_conflict_files",
                    "kept", "removed_copies")} | {"dropped_files": [d["file"] for d in u.report.get("dropped", [])]}})
    if split == "test" and expected is not None and digest != expected and console is not None:
        console.print("[yellow]warning: this test split differs from the one in the model card "
                      "(data changed?); the numbers are not on the model's held-out split[/]")
    if not quiet and console is not None:
        from .metrics import summary_table

        console.print(summary_table(res, f"{loaded.name} on UTKFace, split {split}, tta={tta}"))
        console.print(group_table(res, "accuracy by group (Wilson 95% intervals)"))
    return res
