"""Calibrated scores for every shipped model: fit a temperature on validation, report on test.

    .venv/bin/python benchmarks/calibration.py [--models default,fast,ferplus,gender]
        [--text tweeteval,carer,goemotions,crowdflower] [--data ROOT] [--json out/calibration.json]
        [--md out/calibration.md] [--record docs/results/calibration.json] [--plots out/] [--write-cards]

Face models: the temperature minimizing the negative log-likelihood on FER-2013 PublicTest (FER+ majority labels
for the 8-class ``ferplus`` model; UTKFace ``val`` for ``gender``), then on the test split (PrivateTest; UTKFace
``test``) the expected calibration error (15 bins) and NLL before and after, a reliability diagram, and the
accuracy / coverage trade of ``--min-confidence P``. Text models: the same on each dataset's val / test split
(multi-label GoEmotions: one temperature on every label's logit, ECE over all text-label scores).

A model whose card says it was refit on train + val has no held-out validation split: its temperature is still
fitted and reported, but ``--write-cards`` does not store it (a temperature fitted on data the model was trained
on sharpens scores it should not). ``--write-cards`` stores every other temperature in its card, which every
backend (PyTorch, ONNX Runtime, int8, the text ensembles, the server) then applies.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from emotionlab.data.paths import default_data_root  # noqa: E402

THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MACHINE = "Intel Xeon, 2 cores, no GPU"


def coverage_curve(probs: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Accuracy on the faces answered and the share answered, per ``min_confidence`` threshold."""
    conf, ok = probs.max(1), probs.argmax(1) == labels
    rows = []
    for t in THRESHOLDS:
        keep = conf >= t
        rows.append({"min_confidence": t, "coverage": float(keep.mean()),
                     "accuracy": float(ok[keep].mean()) if keep.any() else None})
    return rows


def face_row(name: str, root: Path, args) -> tuple[dict, dict, Path | None]:
    """Fit + report one face model -> (result row, calibration entry for its card, the card file)."""
    from emotionlab.models.calibration import apply_temperature, calibration_report, fit_temperature
    from emotionlab.models.hub import load_model
    from emotionlab.training.metrics import plot_reliability
    from emotionlab.training.temperature import model_probs

    loaded = load_model(name)
    label_set = loaded.card.get("label_set")
    fer = root / "fer2013" / "fer2013.csv.gz"
    if label_set == "gender2":
        data, fp, labels_from, fit_name, test_name = root / "utkface", None, "UTKFace gender", "UTKFace val", \
            "UTKFace test"
    else:
        fp = fer.with_name("fer2013new.csv") if label_set == "ferplus8" else None
        data, labels_from = fer, "FER+ majority" if fp else "FER-2013"
        fit_name, test_name = "FER-2013 PublicTest", "FER-2013 PrivateTest"
    t0 = time.perf_counter()
    p_fit, y_fit, _ = model_probs(name, data, "PublicTest", fp)
    t = fit_temperature(p_fit, y_fit)
    p_test, y_test, _ = model_probs(name, data, "PrivateTest", fp)
    rep = calibration_report(p_test, y_test, t)
    row = {"model": loaded.name, "task": "face", "labels_from": labels_from, "temperature": t,
           "fitted_on": fit_name + (" (FER+ majority labels)" if fp else ""), "reported_on": test_name,
           "n_fit": int(len(y_fit)), "n_test": int(len(y_test)),
           "accuracy": float((p_test.argmax(1) == y_test).mean()),
           **{k: round(rep[k], 4) for k in ("ece_uncalibrated", "ece", "nll_uncalibrated", "nll")},
           "coverage_uncalibrated": coverage_curve(p_test, y_test),
           "coverage": coverage_curve(apply_temperature(p_test, t), y_test),
           "seconds": round(time.perf_counter() - t0, 1)}
    if args.plots:
        args.plots.mkdir(parents=True, exist_ok=True)
        plot_reliability(rep, args.plots / f"reliability_{name}.png", f"{loaded.name}, {test_name}")
    cal = {"method": "temperature", "temperature": t, "fitted_on": row["fitted_on"], "n_fit": row["n_fit"],
           "date": time.strftime("%Y-%m-%d"), "reported_on": test_name,
           "ece_uncalibrated": row["ece_uncalibrated"], "ece": row["ece"],
           "command": "python benchmarks/calibration.py --write-cards"}
    return row, cal, loaded.card_path


def text_row(name: str, root: Path, args) -> tuple[dict, dict | None, object]:
    """Fit + report one shipped text model -> (row, calibration entry or None when it must not ship, model)."""
    from emotionlab.text import load_text_model
    from emotionlab.text.datasets import load_text_dataset
    from emotionlab.text.train import calibration_metrics

    t0 = time.perf_counter()
    clf = load_text_model(name)
    splits = load_text_dataset(name, root)
    va, te = splits["val"], splits["test"]
    p_raw = clf._proba(clf._check(te.texts))  # raw scores, whatever temperature the card holds now
    cal = clf.fit_temperature(va.texts, va.y)  # refits from raw scores (thresholds moved from the old T)
    rep = calibration_metrics(clf, clf._calibrated(p_raw), te.y)
    refit = clf.card.get("refit") == "train+val"
    row = {"model": name, "task": "text", "labels_from": name + (" (multi-label)" if clf.multi_label else ""),
           "temperature": cal["temperature"], "fitted_on": f"{name} val", "reported_on": f"{name} test",
           "n_fit": cal["n_fit"], "n_test": len(te), "multi_label": clf.multi_label,
           **{k: rep[k] for k in ("ece_uncalibrated", "ece", "nll_uncalibrated", "nll")},
           "shipped": not refit, "seconds": round(time.perf_counter() - t0, 1)}
    if not clf.multi_label:
        row["accuracy"] = float((p_raw.argmax(1) == te.y).mean())
    if refit:  # the card still says what was decided and why: T = 1, with the measured alternative
        row["note"] = "refit on train+val: validation is training data, so the temperature is not shipped"
        return row, refit_record(row), clf
    cal.update({"fitted_on": f"{name} val", "reported_on": f"{name} test", "ece_uncalibrated": rep["ece_uncalibrated"],
                "ece": rep["ece"], "command": "python benchmarks/calibration.py --write-cards"})
    return row, cal, clf


def plot_coverage(out: dict, path: Path) -> Path:
    """Accuracy on the answered faces against the share answered, one curve per face model, as
    ``--min-confidence`` goes from 0 to 0.9 (calibrated scores, test split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for name, r in out["models"].items():
        pts = [(c["coverage"], c["accuracy"], c["min_confidence"]) for c in r.get("coverage", [])
               if c["accuracy"] is not None]
        if not pts:
            continue
        cov, acc, thr = zip(*pts)
        ax.plot([100 * c for c in cov], [100 * a for a in acc], marker="o", ms=3, label=name)
        for c, a, t in pts[4:5]:  # label P = 0.6 once per curve
            ax.annotate(f"P≥{t:g}", (100 * c, 100 * a), fontsize=7, xytext=(4, -10), textcoords="offset points")
    ax.set_xlabel("faces answered (%)")
    ax.set_ylabel("accuracy on the answered faces (%)")
    ax.set_xlim(100, 0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("--min-confidence: accuracy vs coverage (test split)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def refit_record(row: dict) -> dict:
    """The ``calibration`` entry of a model refit on train + val: no temperature (T = 1), and why."""
    return {"method": "none", "temperature": 1.0, "date": time.strftime("%Y-%m-%d"),
            "reason": "refit on train+val: no held-out validation split to fit a temperature on",
            "reported_on": row["reported_on"], "ece": row["ece_uncalibrated"],
            "rejected": {"temperature": row["temperature"], "fitted_on": row["fitted_on"] + " (seen in training)",
                         "ece": row["ece"]},
            "command": "python benchmarks/calibration.py --write-cards"}


def tables(out: dict) -> list[dict]:
    """The leaderboard record's tables (``docs/results/calibration.json``)."""
    rows = []
    for name, r in out["models"].items():
        shown = r["model"] if r["model"] == name else f"{r['model']}"
        t = f"{r['temperature']:.3f}" + ("" if r.get("shipped", True) else " (not shipped)")
        ece = (f"{r['ece_uncalibrated']:.3f} → {r['ece']:.3f}" if r.get("shipped", True)
               else f"{r['ece_uncalibrated']:.3f} (with T: {r['ece']:.3f})")
        nll = (f"{r['nll_uncalibrated']:.3f} → {r['nll']:.3f}" if r.get("shipped", True)
               else f"{r['nll_uncalibrated']:.3f} (with T: {r['nll']:.3f})")
        rows.append([f"`{name}` ({shown})" if shown != name else f"`{name}`", r["labels_from"], r["fitted_on"],
                     r["reported_on"], t, ece, nll,
                     f"{100 * r['accuracy']:.1f} %" if r.get("accuracy") is not None else "—"])
    cov = [[f"`{n}`", *[(f"{100 * c['accuracy']:.1f} % / {100 * c['coverage']:.0f} %" if c["accuracy"] is not None
                         else "—") for c in r["coverage"]]]
           for n, r in out["models"].items() if "coverage" in r]
    return [{"caption": "Temperature fitted on each model's validation split (NLL), stored in its card and applied "
                        "by every backend; expected calibration error (15 bins) and NLL on the test split before → "
                        "after; accuracy is unchanged by construction",
             "columns": ["model", "labels", "fitted on", "reported on", "T", "ECE", "NLL", "accuracy"],
             "rows": rows},
            {"caption": "`--min-confidence P`: accuracy on the faces answered / share answered (test split, "
                        "calibrated scores)",
             "columns": ["model", *[f"P ≥ {t:g}" for t in THRESHOLDS]], "rows": cov}]


def markdown(out: dict) -> str:
    lines = []
    for t in tables(out):
        lines += [t["caption"] + ":", "", "| " + " | ".join(t["columns"]) + " |",
                  "|---|" + "---:|" * (len(t["columns"]) - 1)]
        lines += ["| " + " | ".join(r) + " |" for r in t["rows"]] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from emotionlab.text.store import update_config
    from emotionlab.training.temperature import write_calibration

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="default,fast,ferplus,gender", help="face models ('' for none)")
    ap.add_argument("--text", default="tweeteval,carer,goemotions,crowdflower", help="text models ('' for none)")
    ap.add_argument("--data", type=Path, default=default_data_root(), help="the shared data root")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    ap.add_argument("--record", type=Path, help="write the leaderboard record (docs/results/calibration.json)")
    ap.add_argument("--plots", type=Path, help="folder for the reliability diagrams")
    ap.add_argument("--write-cards", action="store_true", help="store each fitted temperature in its model card")
    args = ap.parse_args(argv)
    out: dict = {"data": str(args.data), "date": time.strftime("%Y-%m-%d"), "bins": 15, "models": {}}
    for name in filter(None, args.models.split(",")):
        row, cal, card_path = face_row(name, args.data, args)
        out["models"][name] = row
        print(name, {k: v for k, v in row.items() if not k.startswith("coverage")}, flush=True)
        if args.write_cards:
            if card_path is None:
                raise SystemExit(f"{name}: no card file to write")
            write_calibration(card_path, cal)
    for name in filter(None, args.text.split(",")):
        from emotionlab.text.hub import shipped_text_models

        row, cal, clf = text_row(name, args.data, args)
        out["models"][name] = row
        print(name, row, flush=True)
        if args.write_cards:
            path = shipped_text_models()[name]
            card = {k: v for k, v in clf.card.items() if k != "calibration"}
            card["calibration"] = cal
            thresholds = None if clf.thresholds is None else [float(t) for t in clf.thresholds]
            if not row["shipped"] and clf.multi_label:  # no temperature shipped: keep the raw thresholds
                thresholds = json.loads(path.read_text(encoding="utf-8"))["thresholds"]
            update_config(path, card=card, thresholds=thresholds)
    if args.plots:
        plot_coverage(out, args.plots / "coverage.png")
    md = markdown(out)
    print(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(md + "\n")
    if args.record:
        cmd = ".venv/bin/python benchmarks/calibration.py --write-cards --plots docs/figures --record " + str(args.record)
        args.record.write_text(json.dumps({"title": "Calibrated scores", "benchmark": "benchmarks/calibration.py",
                                           "command": cmd, "machine": MACHINE, "date": out["date"],
                                           "details": "results_calibration.md", "tables": tables(out)},
                                          indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
