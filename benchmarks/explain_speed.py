"""Seconds per heat map for each explanation method and model, on one 48 px face, pinned to N CPU threads.

    .venv/bin/python benchmarks/explain_speed.py [--models default,fast,emonet_s,...] [--threads 1] [--repeat 20]

A name that is a shipped model or a run directory is loaded with its weights; an architecture name is built
with random weights (the cost of a map does not depend on the weights). Prints a Markdown table (median and
90th percentile milliseconds of ``emotionlab.explain.explain`` per call, after one warm-up call).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def load(name: str):
    from emotionlab.models import create_model, list_models
    from emotionlab.models.hub import load_model

    try:
        lm = load_model(name)
        label = f"{name} = {lm.name}" if name in ("default", "fast") else name
        return label, lm.model, lm.model.in_size
    except FileNotFoundError:
        if name not in list_models():
            raise
        m = create_model(name).eval()
        return f"{name} (random weights)", m, m.in_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="default,fast,emonet_s,emonet_t,mini_xception,seed_cnn")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from emotionlab.explain import METHODS, explain

    torch.set_num_threads(args.threads)
    print(f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} thread(s), median / p90 ms per map over {args.repeat} calls\n")
    print("| model | " + " | ".join(METHODS) + " |")
    print("|---|" + "---:|" * len(METHODS))
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        try:
            label, model, size = load(name)
        except (FileNotFoundError, KeyError) as e:
            print(f"<!-- skipped {name}: {e} -->")
            continue
        x = torch.randn(1, size, size, generator=torch.Generator().manual_seed(0))
        cells = []
        for method in METHODS:
            explain(model, x, method)  # warm-up (layer search, allocator)
            ts = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                explain(model, x, method)
                ts.append(1000 * (time.perf_counter() - t0))
            cells.append(f"{np.median(ts):.0f} / {np.percentile(ts, 90):.0f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
