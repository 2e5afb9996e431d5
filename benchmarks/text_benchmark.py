"""Train and evaluate every text model on every text dataset; write a Markdown table; optionally ship the best.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/text_benchmark.py [--data ../shared/data]
        [--datasets tweeteval,carer,goemotions,crowdflower] [--models naive_bayes,tfidf_lr,embed_lr,embed_mlp,ensemble]
        [--markdown docs/results_text.md] [--ship]

Hyper-parameters and ensemble weights are tuned on each dataset's validation split only; numbers are on test.
CrowdFlower has no official split: a seeded (seed 0) stratified 80/10/10 split of seed 000's 5 merged classes.
Results accumulate in ``cache_dir()/text_benchmark.json`` so datasets can be run one at a time. ``--ship``
saves the best model per dataset (validation macro-F1) to ``src/emotionlab/text/weights/<dataset>.*``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

MAX_SHIP_BYTES = 25 * 1024 * 1024

#: Smaller grids where a fit is expensive (GoEmotions: 28 one-vs-rest regressions per point) and bagged MLPs
#: where they are cheap. Anything not listed uses ``emotionlab.text.train.GRIDS``.
GRID_OVERRIDES = {
    "tweeteval": {"embed_mlp": [{"n_models": 5}]},
    "crowdflower": {"tfidf_lr": [{"C": 1.0}, {"C": 3.0}, {"C": 1.0, "class_weight": "balanced"}],
                    "embed_lr": [{"C": 1.0}, {"C": 4.0}], "embed_mlp": [{"n_models": 3}]},
    "goemotions": {"tfidf_lr": [{"C": 4.0, "max_word_features": 100_000, "max_char_features": 100_000}],
                   "embed_lr": [{"C": 4.0}], "embed_mlp": [{"n_models": 1}]},
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("EMOTIONLAB_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--datasets", default="tweeteval,carer,crowdflower,goemotions")
    ap.add_argument("--models", default="naive_bayes,tfidf_lr,embed_lr,embed_mlp,ensemble")
    ap.add_argument("--markdown", default=str(REPO / "docs" / "results_text.md"))
    ap.add_argument("--ship", action="store_true", help="save the best model per dataset into the package")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from emotionlab.data.cache import cache_dir
    from emotionlab.text.datasets import load_text_dataset
    from emotionlab.text.train import evaluate_model, train_tuned, tune_ensemble

    store = cache_dir() / "text_benchmark.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    kinds = args.models.split(",")
    for ds_name in args.datasets.split(","):
        splits = load_text_dataset(ds_name, args.data)
        test = splits["test"]
        print(f"== {ds_name}: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()), flush=True)
        cache: dict = {}
        fitted = {}
        for kind in kinds:
            if kind == "ensemble":
                members = [fitted[k] for k in ("tfidf_lr", "embed_lr", "embed_mlp", "finetune") if k in fitted]
                if len(members) < 2:
                    continue
                t0 = time.perf_counter()
                model = tune_ensemble(members, splits["val"], name=f"ensemble-{ds_name}")
                model.card["train_seconds"] = round(sum(m.card.get("train_seconds_total", 0) for m in members)
                                                    + time.perf_counter() - t0, 1)
            else:
                grid = GRID_OVERRIDES.get(ds_name, {}).get(kind)
                model = train_tuned(kind, splits, grid=grid, name=f"{kind}-{ds_name}", cache=cache)
                model.card["train_seconds"] = model.card.pop("train_seconds_total", model.card.get("train_seconds"))
            fitted[kind] = model
            m = evaluate_model(model, test)
            row = {"model": kind, "dataset": ds_name, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                   "micro_f1": m.get("micro_f1"), "val_macro_f1": model.card.get("val_macro_f1"),
                   "train_seconds": model.card.get("train_seconds"), "ms_per_text": m["ms_per_text"],
                   "params": model.params if kind != "ensemble" else {"weights": model.weights}}
            model.card["test"] = {k: m[k] for k in ("accuracy", "macro_f1", "micro_f1", "n") if k in m}
            results[f"{ds_name}/{kind}"] = row
            print(f"   {kind:12s} test acc {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} "
                  f"({row['train_seconds']}s train, {m['ms_per_text']:.2f} ms/text)", flush=True)
            if kind == "naive_bayes":
                results[f"{ds_name}/naive_bayes/informative"] = model.most_informative_features(15)
            store.write_text(json.dumps(results, indent=1))
        if args.ship and fitted:
            best = max(fitted.values(), key=lambda mm: mm.card.get("val_macro_f1", -1))
            best.name = ds_name
            best.card.update({"shipped_as": ds_name, "date": datetime.date.today().isoformat()})
            out = REPO / "src" / "emotionlab" / "text" / "weights" / ds_name
            js = best.save(out)
            size = max(js.stat().st_size, js.with_suffix(".safetensors").stat().st_size)
            print(f"   shipped {best.kind} as {js} (largest file {size / 2**20:.1f} MiB)", flush=True)
            if size > MAX_SHIP_BYTES:
                print(f"   WARNING: {size} bytes exceeds the 25 MB limit", flush=True)
            results[f"{ds_name}/shipped"] = best.kind
            store.write_text(json.dumps(results, indent=1))
    write_markdown(results, Path(args.markdown), " ".join(["benchmarks/text_benchmark.py"] + (argv or sys.argv[1:])))


def write_markdown(results: dict, path: Path, command: str) -> None:
    order = ["tweeteval", "carer", "goemotions", "goemotions_ekman", "crowdflower", "crowdflower13"]
    kinds = ["naive_bayes", "tfidf_lr", "embed_lr", "embed_mlp", "finetune", "ensemble"]
    lines = [
        "# Text emotion models: results", "",
        f"Command: `OMP_NUM_THREADS=1 .venv/bin/python {command}`  ",
        f"Machine: 2-core CPU ({platform.processor() or platform.machine()}), 1 torch thread, shared with two "
        "face-model trainings running at the same time (timings are pessimistic). Date: 2026-11-22.", "",
        "Hyper-parameters (C, class weights, MLP early stopping) and ensemble weights were tuned on each "
        "validation split; all numbers below are on the **test** split. GoEmotions is multi-label: macro-F1 "
        "with per-class thresholds tuned on dev, accuracy = exact match. CrowdFlower = seed 000's 5 merged "
        "classes (happiness <- happiness, fun, enthusiasm, relief; love; neutral; sadness; worry; empty, surprise, "
        "hate, boredom, anger dropped), seeded stratified 80/10/10 split (seed 0). `ms/text` = batch prediction "
        "time per text on the test split, embeddings cached where the model uses MiniLM (so it measures the head; "
        "uncached MiniLM costs about 10 ms/text on this machine).", "",
        "| dataset | model | accuracy | macro-F1 | val macro-F1 | train s | ms/text |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for ds in order:
        for k in kinds:
            r = results.get(f"{ds}/{k}")
            if not r:
                continue
            ship = " (shipped)" if results.get(f"{ds}/shipped") == k else ""
            lines.append(f"| {ds} | {k}{ship} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
                         f"{(r.get('val_macro_f1') or 0):.4f} | {r['train_seconds']} | {r['ms_per_text']:.2f} |")
    lines += ["", "Targets (issue 7): TweetEval macro-F1 >= 0.75 (aim 0.80); CARER accuracy >= 0.92 (aim 0.935); "
              "GoEmotions macro-F1 >= 0.46 (aim 0.50); CrowdFlower 5-class accuracy >= 0.50 (seed 000: 0.39).", ""]
    for ds in order:
        inf = results.get(f"{ds}/naive_bayes/informative")
        if not inf:
            continue
        lines += [f"## Naive Bayes most informative features: {ds}", "",
                  "| feature | value | label : vs | ratio |", "|---|---|---|---:|"]
        lines += [f"| {r['feature']} | {r['value']} | {r['label']} : {r['vs']} | {r['ratio']:.1f} |" for r in inf]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
