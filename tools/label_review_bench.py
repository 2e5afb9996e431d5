"""Benchmarks of `emotionlab data issues` (docs/results_label_review.md).

    python tools/label_review_bench.py fer ISSUES_DIR --data fer2013.csv.gz --ferplus fer2013new.csv
        precision of the flags against the FER+ majority, next to FER+'s own disagreement rate
    python tools/label_review_bench.py make-folder OUT_DIR --data fer2013.csv.gz [--n 700 --rate 0.1]
        PublicTest faces as PNG class folders with a known share of labels flipped (truth in OUT_DIR.truth.csv)
    python tools/label_review_bench.py folder ISSUES_DIR --truth OUT_DIR.truth.csv
        precision and recall of the flags against the known flips
    python tools/label_review_bench.py cleaning ISSUES_DIR --data fer2013.csv.gz [--ferplus fer2013new.csv]
        the same small model (HOG + logistic regression) trained on Training as given / relabelled / dropped,
        scored on PrivateTest
    python tools/label_review_bench.py cleaning-cnn ISSUES_DIR --data fer2013.csv.gz --ferplus fer2013new.csv \
        --variant given|drop_all|drop_top2000 [--epochs 12]   the same question for a CNN (EmoNet-T), one variant
        per call
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def _flags(issues_dir: Path) -> list[dict]:
    with open(issues_dir / "label_issues.csv", newline="") as f:
        return list(csv.DictReader(f))


def fer(args) -> dict:
    from emotionlab.data.ferplus import load_ferplus
    from emotionlab.data.labels import FER7
    from emotionlab.data.loader import load_dataset

    ds = load_dataset(args.data).split(args.split)
    votes = load_ferplus(args.ferplus)
    maj = votes.majority[ds.rows]  # FERPLUS8 index; -1: no majority, or unknown / not a face
    nf_or_unknown = ~votes.valid[ds.rows]
    has = maj >= 0
    disagree = has & (maj != ds.labels)
    out = {"n": int(len(ds)), "ferplus_majority": int(has.sum()), "ferplus_not_face_or_unknown": int(nf_or_unknown.sum()),
           "base_rate_disagree": round(float(disagree.sum() / has.sum()), 4)}
    where = {int(r): i for i, r in enumerate(ds.rows)}
    flags = _flags(args.issues)
    for kind in ("label", "duplicate", "outlier", "all"):
        sel = [f for f in flags if kind == "all" or f["kind"] == kind]
        # each face once (a face flagged as label and duplicate counts once under "all")
        pos = list(dict.fromkeys(where[int(f["index"])] for f in sel))
        pos = np.asarray(pos, np.int64)
        if not len(pos):
            out[kind] = {"flags": 0}
            continue
        judged = pos[has[pos]]
        row = {"flags": int(len(pos)), "judged": int(len(judged)),
               "precision": round(float(disagree[judged].mean()), 4) if len(judged) else None,
               "not_face_or_unknown": int(nf_or_unknown[pos].sum())}
        if kind == "label":
            # the suggestion matches the FER+ majority, among right flags
            sug = {where[int(f["index"])]: FER7.index(f["suggested"]) for f in sel}
            right = judged[disagree[judged]]
            row["suggested_is_ferplus_majority"] = round(float(np.mean([sug[i] == maj[i] for i in right])), 4)
            row["recall_of_ferplus_disagreements"] = round(float(disagree[judged].sum() / disagree.sum()), 4)
            for k in (100, 500, 1000, 2000, 5000):
                top = pos[:k]  # the CSV ranks label flags by score, highest first
                j = top[has[top]]
                row[f"precision_top{k}"] = round(float(disagree[j].mean()), 4) if len(j) else None
        out[kind] = row
    return out


def make_folder(args) -> dict:
    import cv2

    from emotionlab.data.labels import FER7
    from emotionlab.data.loader import load_dataset

    ds = load_dataset(args.data).split("PublicTest")
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(ds), args.n, replace=False))
    flip = rng.random(args.n) < args.rate
    given = ds.labels[idx].copy()
    given[flip] = (given[flip] + rng.integers(1, 7, int(flip.sum()))) % 7
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=False)
    truth = out.with_name(out.name + ".truth.csv")
    with open(truth, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "row", "true", "given", "flipped"])
        for j, i in enumerate(idx):
            d = out / FER7.labels[int(given[j])]
            d.mkdir(exist_ok=True)
            p = d / f"{int(ds.rows[i]):05d}.png"
            cv2.imwrite(str(p), ds.images[i])
            w.writerow([str(p), int(ds.rows[i]), FER7.labels[int(ds.labels[i])], FER7.labels[int(given[j])],
                        int(flip[j])])
    return {"folder": str(out), "truth": str(truth), "n": int(args.n), "flipped": int(flip.sum())}


def folder(args) -> dict:
    with open(args.truth, newline="") as f:
        truth = {Path(r["path"]).resolve(): r for r in csv.DictReader(f)}
    flipped = {p for p, r in truth.items() if r["flipped"] == "1"}
    flags = _flags(args.issues)
    out = {"n": len(truth), "flipped": len(flipped)}
    for kind in ("label", "all"):
        sel = {Path(f["index"]).resolve() for f in flags if kind == "all" or f["kind"] == kind}
        hit = sel & flipped
        out[kind] = {"flags": len(sel), "right": len(hit),
                     "precision": round(len(hit) / len(sel), 4) if sel else None,
                     "recall": round(len(hit) / len(flipped), 4)}
    if args.ferplus:
        from emotionlab.data.ferplus import load_ferplus
        from emotionlab.data.labels import FER7

        v = load_ferplus(args.ferplus)
        wrong_src = {p for p, r in truth.items() if v.majority[int(r["row"])] >= 0
                     and v.majority[int(r["row"])] != FER7.index(r["true"])}
        sel = {Path(f["index"]).resolve() for f in flags if f["kind"] == "label"}
        out["label"]["precision_flip_or_ferplus_disagrees"] = round(len(sel & (flipped | wrong_src)) / len(sel), 4)
        out["source_labels_ferplus_disagrees"] = len(wrong_src)
        out["base_rate_flip_or_ferplus_disagrees"] = round(len(flipped | wrong_src) / len(truth), 4)
    sug = {Path(f["index"]).resolve(): f["suggested"] for f in flags if f["kind"] == "label"}
    right = [p for p in sug if p in flipped]
    out["label"]["suggested_is_true_label"] = round(float(np.mean([sug[p] == truth[p]["true"] for p in right])), 4) \
        if right else None
    return out


def cleaning(args) -> dict:
    from emotionlab.data.labels import FER7
    from emotionlab.data.loader import load_dataset
    from emotionlab.training.label_issues import _small_model, hog_features

    full = load_dataset(args.data)
    tr, te = full.split("Training"), full.split("PrivateTest")
    where = {int(r): i for i, r in enumerate(tr.rows)}
    flags = [f for f in _flags(args.issues) if f["kind"] == "label"]
    xtr, xte = hog_features(tr.images), hog_features(te.images)
    maj = None
    if args.ferplus:
        from emotionlab.data.ferplus import load_ferplus

        m = load_ferplus(args.ferplus).majority[te.rows]
        maj = m
    results = {}
    variants = {"given": None}
    for k in args.top:
        variants[f"relabel_top{k}" if k else "relabel_all"] = ("relabel", k)
        variants[f"drop_top{k}" if k else "drop_all"] = ("drop", k)
    for name, v in variants.items():
        y = tr.labels.copy()
        keep = np.ones(len(tr), bool)
        if v is not None:
            how, k = v
            sel = flags[:k] if k else flags
            pos = np.asarray([where[int(f["index"])] for f in sel])
            if how == "relabel":
                y[pos] = [FER7.index(f["suggested"]) for f in sel]
            else:
                keep[pos] = False
        model = _small_model(0)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(xtr[keep], y[keep])
        pred = model.predict(xte)
        r = {"train_n": int(keep.sum()), "privatetest_acc": round(float((pred == te.labels).mean()), 4)}
        if maj is not None:
            ok = maj >= 0
            r["privatetest_acc_vs_ferplus_majority"] = round(float((pred[ok] == maj[ok]).mean()), 4)
        results[name] = r
        print(name, r, flush=True)
    return results


def cleaning_cnn(args) -> dict:
    """One variant per call (run them side by side, one core each): EmoNet-T trained from scratch on Training as
    given or with label flags dropped, same seed / recipe / epochs, selected on PublicTest, scored on
    PrivateTest against FER-2013 labels and against the FER+ majority."""
    import time

    from emotionlab.data.loader import load_dataset
    from emotionlab.training.config import TrainConfig
    from emotionlab.training.engine import fit
    from emotionlab.training.evaluation import run_evaluation

    full = load_dataset(args.data)
    tr, va = full.split("Training"), full.split("PublicTest")
    keep = np.ones(len(tr), bool)
    if args.variant != "given":
        k = int(args.variant.removeprefix("drop_top")) if args.variant.startswith("drop_top") else 0
        flags = [f for f in _flags(args.issues) if f["kind"] == "label"]
        sel = flags[:k] if k else flags
        where = {int(r): i for i, r in enumerate(tr.rows)}
        keep[[where[int(f["index"])] for f in sel]] = False
    train = tr.subset(np.flatnonzero(keep))
    cfg = TrainConfig.from_dict({  # the retired emonet_t recipe, FER-2013 labels only (no FER+ soft targets)
        "model": "emonet_t", "data": str(args.data), "epochs": args.epochs, "batch_size": 64, "lr": 0.05,
        "weight_decay": 3e-4, "threads": 1, "seed": 0,
        "augment": {"flip": 0.5, "rotate": 15, "scale": [0.9, 1.1], "translate": 0.1, "erase": 0.2}})
    out = Path(args.out) / args.variant
    t0 = time.perf_counter()
    fit(cfg, out, resume=True, command=f"tools/label_review_bench.py cleaning-cnn --variant {args.variant}",
        splits=(train, va))
    r = {"variant": args.variant, "train_n": int(keep.sum()), "epochs": args.epochs,
         "train_s": round(time.perf_counter() - t0)}
    res = run_evaluation(str(out), args.data, split="PrivateTest", quiet=True)
    r["privatetest_acc"] = round(res["accuracy"], 4)
    r["privatetest_macro_f1"] = round(res["macro_f1"], 4)
    if args.ferplus:
        res = run_evaluation(str(out), args.data, split="PrivateTest", quiet=True, ferplus=Path(args.ferplus))
        r["privatetest_acc_vs_ferplus_majority"] = round(res["accuracy"], 4)
    (Path(args.out) / f"{args.variant}.json").write_text(json.dumps(r, indent=1))
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("fer")
    a.add_argument("issues", type=Path)
    a.add_argument("--data", required=True)
    a.add_argument("--ferplus", required=True)
    a.add_argument("--split", default="Training")
    a = sub.add_parser("make-folder")
    a.add_argument("out")
    a.add_argument("--data", required=True)
    a.add_argument("--n", type=int, default=700)
    a.add_argument("--rate", type=float, default=0.1)
    a.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("folder")
    a.add_argument("issues", type=Path)
    a.add_argument("--truth", required=True)
    a.add_argument("--ferplus", help="also count a flag right when FER+ disagrees with the source label")
    a = sub.add_parser("cleaning")
    a.add_argument("issues", type=Path)
    a.add_argument("--data", required=True)
    a.add_argument("--ferplus")
    a.add_argument("--top", type=int, nargs="*", default=[0], help="relabel / drop the top K label flags (0 = all)")
    a = sub.add_parser("cleaning-cnn")
    a.add_argument("issues", type=Path)
    a.add_argument("--data", required=True)
    a.add_argument("--ferplus")
    a.add_argument("--variant", default="given", help="given | drop_all | drop_topK")
    a.add_argument("--epochs", type=int, default=12)
    a.add_argument("--out", default="/tmp/cleaning_cnn")
    args = ap.parse_args()
    fn = {"fer": fer, "make-folder": make_folder, "folder": folder, "cleaning": cleaning,
          "cleaning-cnn": cleaning_cnn}[args.cmd]
    print(json.dumps(fn(args), indent=2))


if __name__ == "__main__":
    main()
