"""Compute profile of every registered architecture on this machine: params, MFLOPs, training img/s,
inference ms/face (PyTorch, batch 1 and batch 64). Accuracy is measured by training, not here.

    .venv/bin/python benchmarks/zoo_speed.py [--threads 2] [--iters 10] [--bf16] [--json out/zoo_speed.json]

``--bf16`` adds training img/s under bf16 autocast: it pays on CPUs with AMX and not on AVX2 / AVX-512 alone,
which is what ``train --bf16-auto`` measures per run.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from emotionlab.models import count_mflops, count_params, create_model, get_entry, list_models
from emotionlab.training.engine import autocast_ctx


def train_img_s(name: str, size: int, iters: int, bs: int = 64, bf16: bool = False) -> float:
    m = create_model(name, in_size=size).train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(bs, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (bs,))
    for i in range(iters + 2):
        if i == 2:
            t = time.perf_counter()
        with autocast_ctx(torch.device("cpu"), bf16):  # what training uses
            loss = F.cross_entropy(m(x).float(), y)
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
    ap.add_argument("--models", default="*", help="comma-separated name patterns, e.g. 'emonet_*,simple_cnn'")
    ap.add_argument("--bf16", action="store_true", help="also time training under bf16 autocast")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for name in sorted({n for pat in a.models.split(',') for n in list_models(pat)}):
        sizes = get_entry(name).sizes
        for size in sizes:
            heavy = name == "resnet50"
            it = max(2, a.iters // (4 if heavy else 1))
            row = {"model": name, "in_size": size, "params": count_params(create_model(name, in_size=size)),
                   "mflops": round(count_mflops(create_model(name, in_size=size), size), 1),
                   "train_img_s": round(train_img_s(name, size, it), 1),
                   **({"train_img_s_bf16": round(train_img_s(name, size, it, bf16=True), 1)} if a.bf16 else {}),
                   "infer_ms_b1": round(infer_ms(name, size, 1, it * 5), 3),
                   "infer_ms_b64": round(infer_ms(name, size, 64, it), 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    meta = {"machine": f"{platform.processor() or platform.machine()}, {a.threads} threads", "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "amx_bf16": "amx_bf16" in flags}
    print(f"\n{meta}")
    bf = " train img/s bf16 |" if a.bf16 else ""
    print(f"| model | px | params | MFLOPs | train img/s |{bf} infer ms/face (b=1) | infer ms/face (b=64) |")
    print("|---|---|---|---|---|" + ("---|" if a.bf16 else "") + "---|---|")
    for r in rows:
        bf = f" {r['train_img_s_bf16']} |" if a.bf16 else ""
        print(f"| {r['model']} | {r['in_size']} | {r['params']:,} | {r['mflops']} | {r['train_img_s']} |{bf} "
              f"{r['infer_ms_b1']} | {r['infer_ms_b64']} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
