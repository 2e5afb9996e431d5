"""Calibrated scores for the shipped face models: fit a temperature on validation, report on test.

    .venv/bin/python benchmarks/calibration.py [--models default,fast,ferplus] [--data FER.csv.gz]
        [--ferplus fer2013new.csv] [--json out/calibration.json] [--md out/calibration.md] [--plots out/]
        [--write-cards]

For each model: the temperature that minimizes the negative log-likelihood on FER-2013 PublicTest (FER+ majority
labels for the 8-class ``ferplus`` model), then on PrivateTest the expected calibration error (15 bins) and NLL
before and after, a reliability diagram, and the accuracy / coverage trade of ``--min-confidence P``: answering
only faces whose top calibrated score is at least P. ``--write-cards`` stores each temperature in the model's
card (``calibration``), which every backend then applies.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from emotionlab.data.paths import default_fer2013_csv  # noqa: E402

THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def coverage_curve(probs: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Accuracy on the faces answered and the share answered, per ``min_confidence`` threshold."""
    conf, ok = probs.max(1), probs.argmax(1) == labels
    rows = []
    for t in THRESHOLDS:
        keep = conf >= t
        rows.append({"min_confidence": t, "coverage": float(keep.mean()),
                     "accuracy": float(ok[keep].mean()) if keep.any() else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    from emotionlab.models.calibration import apply_temperature, calibration_report, fit_temperature
    from emotionlab.models.hub import load_model
    from emotionlab.training.metrics import plot_reliability
    from emotionlab.training.temperature import model_probs, write_calibration

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="default,fast,ferplus")
    ap.add_argument("--data", default=str(default_fer2013_csv()))
    ap.add_argument("--ferplus", default=None, help="FER+ votes (default: fer2013new.csv beside --data)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    ap.add_argument("--plots", type=Path, help="folder for the reliability diagrams")
    ap.add_argument("--write-cards", action="store_true", help="store each fitted temperature in its model card")
    args = ap.parse_args(argv)
    ferplus = Path(args.ferplus) if args.ferplus else Path(args.data).with_name("fer2013new.csv")
    out: dict = {"data": args.data, "date": time.strftime("%Y-%m-%d"), "fit_split": "PublicTest",
                 "test_split": "PrivateTest", "bins": 15, "models": {}}
    for name in args.models.split(","):
        loaded = load_model(name)
        fp = ferplus if loaded.card.get("label_set") == "ferplus8" else None
        t0 = time.perf_counter()
        p_fit, y_fit, _ = model_probs(name, args.data, "PublicTest", fp)
        t = fit_temperature(p_fit, y_fit)
        p_test, y_test, _ = model_probs(name, args.data, "PrivateTest", fp)
        rep = calibration_report(p_test, y_test, t)
        cal = apply_temperature(p_test, t)
        row = {"model": loaded.name, "labels_from": "FER+ majority" if fp else "FER-2013", "temperature": t,
               "n_fit": int(len(y_fit)), "n_test": int(len(y_test)),
               "accuracy": float((p_test.argmax(1) == y_test).mean()),
               **{k: round(rep[k], 4) for k in ("ece_uncalibrated", "ece", "nll_uncalibrated", "nll")},
               "coverage_uncalibrated": coverage_curve(p_test, y_test), "coverage": coverage_curve(cal, y_test),
               "seconds": round(time.perf_counter() - t0, 1)}
        out["models"][name] = row
        print(name, {k: v for k, v in row.items() if not k.startswith("coverage")}, flush=True)
        if args.plots:
            args.plots.mkdir(parents=True, exist_ok=True)
            plot_reliability(rep, args.plots / f"reliability_{name}.png", f"{loaded.name}, FER-2013 PrivateTest")
        if args.write_cards:
            if loaded.card_path is None:
                raise SystemExit(f"{name}: no card file to write")
            write_calibration(loaded.card_path, {
                "method": "temperature", "temperature": t, "fitted_on": "FER-2013 PublicTest"
                + (" (FER+ majority labels)" if fp else ""), "n_fit": row["n_fit"], "date": out["date"],
                "reported_on": "FER-2013 PrivateTest", "ece_uncalibrated": row["ece_uncalibrated"], "ece": row["ece"],
                "command": "python benchmarks/calibration.py --write-cards"})
    lines = ["| model | labels | T (fit on PublicTest) | ECE raw → calibrated | NLL raw → calibrated | accuracy |",
             "|---|---|---:|---:|---:|---:|"]
    for name, r in out["models"].items():
        lines.append(f"| `{name}` ({r['model']}) | {r['labels_from']} | {r['temperature']:.3f} | "
                     f"{r['ece_uncalibrated']:.3f} → **{r['ece']:.3f}** | {r['nll_uncalibrated']:.3f} → "
                     f"{r['nll']:.3f} | {100 * r['accuracy']:.1f} % |")
    lines += ["", "Accuracy on the faces answered / share answered, by `--min-confidence` (calibrated scores):", "",
              "| model | " + " | ".join(f"P ≥ {t:g}" for t in THRESHOLDS) + " |",
              "|---|" + "---:|" * len(THRESHOLDS)]
    for name, r in out["models"].items():
        lines.append(f"| `{name}` | " + " | ".join(
            (f"{100 * c['accuracy']:.1f} % / {100 * c['coverage']:.0f} %" if c["accuracy"] is not None else "—")
            for c in r["coverage"]) + " |")
    md = "\n".join(lines)
    print(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
