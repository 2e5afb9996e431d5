"""Does occlusion-augmented training restore accuracy under masks, and what does it cost unmasked?

    .venv/bin/python benchmarks/occlusion_training.py [--data PATH] [--model emonet_t] [--epochs 6]
        [--max-train 8000] [--occlude 0.5] [--threads 1] [--out out/bench-occlusion]
        [--markdown docs/results_explain.md] [--skip-train]

1. Trains the same model twice with ``emotionlab train`` (same config, seed, data subset and epochs): once with
   ``--occlude 0`` and once with ``--occlude P`` (each training batch hides the forehead, eyes or lower face
   of a fraction P of the faces; ``emotionlab.training.augment.occlusion``).
2. Evaluates both on FER-2013 PrivateTest with ``occlusion_table`` (what ``emotionlab evaluate --occlude``
   calls) for the masks none, forehead, eyes, mouth; twice: black patches (seed 004, ``apply_mask`` default)
   and mean-grey patches (the fill the training augmentation uses: 0 in normalized units).
3. Writes a Markdown comparison into ``--markdown`` between the ``occlusion-training`` markers (the rest of
   the file is kept) and everything into ``OUT/results.json``.

A small-scale run (a subset of Training, few epochs) answers the question for that scale only; the script
says so in its output. Training uses the model's CPU config in ``configs/`` when there is one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MASKS = ["none", "forehead", "eyes", "mouth"]
START, END = "<!-- occlusion-training:start -->", "<!-- occlusion-training:end -->"


from emotionlab.data.paths import default_fer2013_csv  # noqa: E402  (the one default-data rule)


def train(args, occlude: float, out: Path) -> dict:
    """One ``emotionlab train`` run in a subprocess pinned to ``--threads`` (the CLI, exactly as a user runs it)."""
    cmd = ["emotionlab", "train", "--model", args.model, "--data", str(args.data), "--epochs", str(args.epochs),
           "--max-train", str(args.max_train), "--occlude", str(occlude), "--seed", str(args.seed),
           "--threads", str(args.threads), "--out", str(out)]
    cfg = REPO / "configs" / f"{args.model}_cpu.yaml"
    if cfg.exists():
        cmd[2:2] = ["--config", os.path.relpath(cfg, REPO)]
    if (out / "last.json").exists() and (out / "config.json").exists():
        cmd.append("--resume")  # an interrupted run continues from its last finished epoch
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    runner = [sys.executable, "-c", "import sys; from emotionlab.cli import main; main(sys.argv[1:])"]
    print("$", shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(runner + cmd[1:], check=True, env=env, cwd=REPO)
    return {"command": shlex.join(c for c in cmd if c != "--resume"), "seconds": round(time.perf_counter() - t0, 1),
            "resumed": "--resume" in cmd}


def evaluate(run: Path, data: Path, tta: str, limit: int | None) -> dict:
    """occlusion tables on PrivateTest for a black and a mean-grey fill."""
    import numpy as np

    from emotionlab.data.loader import eval_split, load_dataset
    from emotionlab.explain.occlusion_study import occlusion_table
    from emotionlab.models.hub import load_model

    loaded = load_model(run)
    ds = eval_split(load_dataset(data, size=loaded.preprocess.size), "PrivateTest")
    images, labels = ds.images, ds.labels
    if limit:
        images, labels = images[:limit], labels[:limit]
    grey = int(round(255 * loaded.preprocess.mean))
    black = occlusion_table(loaded, images, labels, MASKS, tta=tta, out_dir=run / "occlusion-black")
    meangrey = occlusion_table(loaded, images, labels, MASKS, tta=tta, out_dir=run / "occlusion-grey", fill=grey)
    card = json.loads((run / "best.json").read_text())
    return {"black": black, "grey": meangrey, "grey_level": grey, "n": len(labels),
            "best_epoch": card.get("training", {}).get("epochs_run"),
            "val_accuracy": card.get("metrics", {}).get("validation", {}).get("accuracy"),
            "label_counts": np.bincount(labels, minlength=len(loaded.labels)).tolist()}


def _rel(text: str) -> str:
    """Paths in commands relative to the repository, as a reader would type them."""
    return text.replace(f"{REPO}/", "").replace(f"{REPO.parent}/", "../")


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def markdown(res: dict) -> str:
    a, b = res["runs"]["plain"], res["runs"]["occluded"]
    p = res["settings"]["occlude"]
    labels = a["eval"]["black"]["none"]["labels"]
    lines = [START, "", f"## Occlusion-augmented training (small scale: {res['settings']['max_train']} training "
             f"faces, {res['settings']['epochs']} epochs, {res['settings']['model']})", "",
             f"Same config, seed and data subset; only `--occlude` differs (0 vs {p}). Evaluated on "
             f"{'the first ' if res['settings']['eval_limit'] else 'all '}{a['eval']['n']} FER-2013 PrivateTest "
             "faces, no TTA, with `occlusion_table` (the function behind "
             "`emotionlab evaluate --occlude`). **This is a small-scale answer**: the models are far from "
             "converged, so absolute accuracies are low; the comparison between the two runs is the point.", ""]
    for fill, what in (("black", "black patches (seed 004; `evaluate --occlude` default)"),
                       ("grey", f"mean-grey patches (grey level {a['eval']['grey_level']}, the fill the "
                                "training augmentation uses)")):
        lines += [f"### Accuracy under {what}", "",
                  "| mask | acc, occlude 0 | acc, occlude " + str(p) + " | Δ acc | weighted F1, 0 | weighted F1, "
                  + str(p) + " | Δ F1 |", "|---|---:|---:|---:|---:|---:|---:|"]
        for m in MASKS:
            x, y = a["eval"][fill][m], b["eval"][fill][m]
            lines.append(f"| {m} | {pct(x['accuracy'])} | {pct(y['accuracy'])} | "
                         f"{100 * (y['accuracy'] - x['accuracy']):+.1f} | {pct(x['weighted_f1'])} | "
                         f"{pct(y['weighted_f1'])} | {100 * (y['weighted_f1'] - x['weighted_f1']):+.1f} |")
        lines.append("")
    lines += ["### Per-class accuracy (black patches), seed-004 layout", "",
              "| training | mask | accuracy | weighted F1 | " + " | ".join(labels) + " |",
              "|---|---|" + "---:|" * (2 + len(labels))]
    for key, run in (("occlude 0", a), (f"occlude {p}", b)):
        for m in MASKS:
            met = run["eval"]["black"][m]
            lines.append(f"| {key} | {m} | {pct(met['accuracy'])} | {pct(met['weighted_f1'])} | "
                         + " | ".join(pct(met["per_class_accuracy"][lab]) for lab in labels) + " |")
    masked = [m for m in MASKS if m != "none"]
    gain = {f: sum(b["eval"][f][m]["accuracy"] - a["eval"][f][m]["accuracy"] for m in masked) / len(masked)
            for f in ("black", "grey")}
    cost = b["eval"]["black"]["none"]["accuracy"] - a["eval"]["black"]["none"]["accuracy"]
    drop_a = {m: a["eval"]["black"]["none"]["accuracy"] - a["eval"]["black"][m]["accuracy"] for m in masked}
    drop_b = {m: b["eval"]["black"]["none"]["accuracy"] - b["eval"]["black"][m]["accuracy"] for m in masked}
    lines += ["", "### Answer at this scale", "",
              f"* Mean accuracy change under the three masks with occlusion training: "
              f"{100 * gain['black']:+.1f} points (black patches), {100 * gain['grey']:+.1f} points (mean-grey "
              "patches, the training fill).",
              f"* Unmasked accuracy change (the cost): {100 * cost:+.1f} points "
              f"({pct(a['eval']['black']['none']['accuracy'])} → {pct(b['eval']['black']['none']['accuracy'])}).",
              "* Accuracy lost to each mask (black), plain → occlusion-trained: "
              + ", ".join(f"{m} {100 * drop_a[m]:.1f} → {100 * drop_b[m]:.1f}" for m in masked) + " points.",
              "", f"Run: `.venv/bin/python benchmarks/occlusion_training.py --model {res['settings']['model']} "
              f"--max-train {res['settings']['max_train']} --epochs {res['settings']['epochs']} --occlude {p}`, "
              "which runs:", ""]
    lines += [f"    {_rel(run['train']['command'])}   # {run['train']['seconds'] / 60:.1f} min"
              + (" (resumed after an interruption: remaining epochs only)" if run["train"].get("resumed") else "")
              for run in (a, b)]
    s = res["settings"]
    lines += ["", f"Machine: {s['machine']}; {s['threads']} torch thread(s) per training"
              + (f"; {s['note']}" if s.get("note") else "") + f". Date {s['date']}. Raw numbers: "
              f"`{s['json']}`.", "", END]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Explaining and stress-testing the face models\n\n"
    if START in text and END in text:
        pre, rest = text.split(START, 1)
        text = pre + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=default_fer2013_csv())
    ap.add_argument("--model", default="emonet_t")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--max-train", type=int, default=8000)
    ap.add_argument("--occlude", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tta", default="none")
    ap.add_argument("--eval-limit", type=int, default=None, help="Evaluate on the first N PrivateTest faces only.")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench-occlusion")
    ap.add_argument("--markdown", type=Path, default=REPO / "docs" / "results_explain.md")
    ap.add_argument("--skip-train", action="store_true", help="Reuse the runs already in --out.")
    ap.add_argument("--render-only", action="store_true", help="Rewrite the Markdown from OUT/results.json.")
    ap.add_argument("--note", default="", help="Free text for the machine line (e.g. other load on the CPU).")
    args = ap.parse_args()
    if not args.data.exists():
        sys.exit(f"error: {args.data}: FER-2013 CSV not found (set --data or EMOTIONLAB_DATA)")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    if args.render_only:
        write_section(args.markdown, markdown(json.loads((args.out / "results.json").read_text())))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for key, p in (("plain", 0.0), ("occluded", args.occlude)):
        run_dir = args.out / f"{args.model}-occlude{p:g}"
        info_path = run_dir / "bench_train.json"
        if args.skip_train and (run_dir / "best.json").exists():
            tr = json.loads(info_path.read_text()) if info_path.exists() else {"command": "(reused)", "seconds": 0}
        else:
            tr = train(args, p, run_dir)
            info_path.write_text(json.dumps(tr))
        print(f"evaluating {run_dir} ...", flush=True)
        runs[key] = {"run": str(run_dir), "occlude": p, "train": tr,
                     "eval": evaluate(run_dir, args.data, args.tta, args.eval_limit)}
    res = {"settings": {"model": args.model, "epochs": args.epochs, "max_train": args.max_train,
                        "occlude": args.occlude, "seed": args.seed, "eval_limit": args.eval_limit,
                        "threads": args.threads, "tta": args.tta,
                        "machine": f"{platform.machine()} {platform.processor() or ''} CPU, "
                                   f"{os.cpu_count()} cores".replace("  ", " "),
                        "note": args.note, "json": os.path.relpath(args.out / "results.json", REPO),
                        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")},
           "runs": runs}
    (args.out / "results.json").write_text(json.dumps(res, indent=2))
    section = markdown(res)
    write_section(args.markdown, section)
    print(section)


if __name__ == "__main__":
    main()
