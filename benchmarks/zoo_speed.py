"""Compute profile of every registered architecture on this machine: params, MFLOPs, training img/s,
inference ms/face (PyTorch, batch 1 and batch 64). Accuracy is measured by training, not here.

    .venv/bin/python benchmarks/zoo_speed.py [--threads 2] [--iters 10] [--json out/zoo_speed.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from emotionlab.models import count_mflops, count_params, create_model, get_entry, list_models


def train_img_s(name: str, size: int, iters: int, bs: int = 64) -> float:
    m = create_model(name, in_size=size).train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(bs, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (bs,))
    for i in range(iters + 2):
        if i == 2:
            t = time.perf_counter()
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return iters * bs / (time.perf_counter() - t)


@torch.no_grad()
def infer_ms(name: str, size: int, bs: int, iters: int) -> float:
    m = create_model(name, in_size=size).eval()
    x = torch.randn(bs, 1, size, size)
    for _ in range(2):
        m(x)
    t = time.perf_counter()
    for _ in range(iters):
        m(x)
    return 1000 * (time.perf_counter() - t) / (iters * bs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--models", default="*")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for name in list_models(a.models):
        sizes = get_entry(name).sizes
        for size in sizes:
            heavy = name == "resnet50"
            it = max(2, a.iters // (4 if heavy else 1))
            row = {"model": name, "in_size": size, "params": count_params(create_model(name, in_size=size)),
                   "mflops": round(count_mflops(create_model(name, in_size=size), size), 1),
                   "train_img_s": round(train_img_s(name, size, it), 1),
                   "infer_ms_b1": round(infer_ms(name, size, 1, it * 5), 3),
                   "infer_ms_b64": round(infer_ms(name, size, 64, it), 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {"machine": f"{platform.processor() or platform.machine()}, {a.threads} threads", "torch": torch.__version__}
    print("\n| model | px | params | MFLOPs | train img/s | infer ms/face (b=1) | infer ms/face (b=64) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['in_size']} | {r['params']:,} | {r['mflops']} | {r['train_img_s']} | "
              f"{r['infer_ms_b1']} | {r['infer_ms_b64']} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
