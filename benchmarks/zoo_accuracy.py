"""Accuracy of every zoo architecture on real FER-2013 at one equal, short training budget.

Each model is trained with the same recipe (``configs/zoo_budget.yaml``) through the public CLI, selected on
PublicTest, and evaluated once on PrivateTest. The script records the exact commands, wall time, training
img/s, parameters, MFLOPs and PrivateTest accuracy / macro-F1, and writes a JSON file plus a Markdown table.

    .venv/bin/python benchmarks/zoo_accuracy.py --data ../shared/data/fer2013/fer2013.csv.gz \\
        --models mini_xception,seed_cnn,alexnet_small,vgg16_bn,emonet_t --epochs 3 --max-train 10000 \\
        --threads 2 --out runs/zoo_budget --json docs/zoo_budget.json --md docs/zoo_budget.md

A model spec ``name@size`` trains at another input size (``simple_cnn@50``). Already finished runs (their
``eval.json`` exists) are reused, so the script can be stopped and started again.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "emotionlab"]


from emotionlab.data.paths import default_fer2013_csv  # noqa: E402  (the one default-data rule)


def run(cmd: list[str]) -> float:
    print("$", shlex.join(cmd), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t


def parse_spec(spec: str) -> tuple[str, int | None]:
    name, _, size = spec.partition("@")
    return name, int(size) if size else None


def bench_one(spec: str, args) -> dict:
    from emotionlab.models import count_mflops, count_params, create_model

    name, size = parse_spec(spec)
    run_dir = Path(args.out) / spec.replace("@", "-")
    eval_json = run_dir / "eval.json"
    train_cmd = ["emotionlab", "train", "--model", name, "--data", args.data, "--config", args.config,
                 "--epochs", str(args.epochs), "--out", str(run_dir), "--threads", str(args.threads)]
    if size:
        train_cmd += ["--in-size", str(size)]
    if args.max_train:
        train_cmd += ["--max-train", str(args.max_train)]
    if args.batch_size:
        train_cmd += ["--batch-size", str(args.batch_size)]
    eval_cmd = ["emotionlab", "evaluate", "--model", str(run_dir), "--data", args.data, "--split", "PrivateTest",
                "--json", str(eval_json), "--threads", str(args.threads)]
    train_s = None
    if not eval_json.exists():
        resume = ["--resume"] if (run_dir / "last.json").exists() else []
        train_s = run(CLI + train_cmd[1:] + resume)
        run(CLI + eval_cmd[1:])
    ev = json.loads(eval_json.read_text())
    hist = (run_dir / "history.csv").read_text().strip().splitlines()
    header, rows = hist[0].split(","), [dict(zip(hist[0].split(","), r.split(","))) for r in hist[1:]]
    assert "val_acc" in header, f"unexpected history header in {run_dir}"
    best = max(rows, key=lambda r: float(r["val_acc"]))
    model = create_model(name, in_size=size) if size else create_model(name)
    return {
        "model": spec, "params": count_params(model), "mflops": round(count_mflops(model, model.in_size), 1),
        "in_size": model.in_size, "epochs": len(rows), "best_epoch": int(best["epoch"]),
        "val_accuracy": float(best["val_acc"]), "test_accuracy": ev["accuracy"], "test_macro_f1": ev["macro_f1"],
        "train_img_s": round(sum(float(r["img_s"]) for r in rows) / len(rows), 1),
        "train_seconds": round(sum(float(r["seconds"]) for r in rows), 1), "wall_seconds": train_s,
        "commands": [shlex.join(train_cmd), shlex.join(eval_cmd)],
    }


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"Budget: {meta['budget']}; machine: {meta['machine']}; date {meta['date']}.", "",
             "| model | px | params | MFLOPs | epochs (best) | train img/s | train min | PublicTest acc | "
             "PrivateTest acc | PrivateTest macro-F1 |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| `{r['model']}` | {r['in_size']} | {r['params']:,} | {r['mflops']} | {r['epochs']} "
                     f"({r['best_epoch']}) | {r['train_img_s']} | {r['train_seconds'] / 60:.1f} | "
                     f"{100 * r['val_accuracy']:.1f} % | {100 * r['test_accuracy']:.1f} % | "
                     f"{r['test_macro_f1']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(default_fer2013_csv()))
    p.add_argument("--models", default="mini_xception,simple_cnn@20,simple_cnn@50,simple_cnn@100,emonet_t,"
                                       "seed_cnn,alexnet_small,vgg16_bn")
    p.add_argument("--config", default=str(ROOT / "configs" / "zoo_budget.yaml"))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-train", type=int, default=10000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, help="overrides the config's batch size")
    p.add_argument("--out", default="runs/zoo_budget")
    p.add_argument("--json", type=Path)
    p.add_argument("--md", type=Path)
    args = p.parse_args(argv)
    import torch

    meta = {"budget": f"{args.epochs} epochs on {args.max_train or 'all'} Training images, "
                      f"{Path(args.config).name}, {args.threads} threads",
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
                       f"{torch.__version__}", "date": dt.date.today().isoformat(), "data": args.data}
    rows: list[dict] = []
    for spec in (s.strip() for s in args.models.split(",")):
        if not spec:
            continue
        rows.append(bench_one(spec, args))
        md = markdown(rows, meta)  # written after every model: a stopped run keeps what it measured
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        if args.md:
            args.md.parent.mkdir(parents=True, exist_ok=True)
            args.md.write_text(md)
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
