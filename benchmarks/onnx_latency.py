"""ONNX Runtime CPU latency per face of face architectures (weights do not change the time; no data needed).

    .venv/bin/python benchmarks/onnx_latency.py [--models emonet_t,emonet_n,emonet_f,emonet_s,emonet_m] [--threads 1]
    .venv/bin/python benchmarks/onnx_latency.py --models '' --shipped fast,ferplus --rounds 5

Why: the `fast` model must stay under 1 ms per face with ONNX Runtime on this CPU; this is the check.
``--shipped`` times the graphs the pipeline runs for shipped models (an int8 model's own graph), in interleaved
rounds so that a busy moment of the machine does not favour one of them.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    from emotionlab.models.onnx import _export_module
    from emotionlab.inference.quantize import graph_latency_ms
    from emotionlab.models import create_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="emonet_t,emonet_n,emonet_f,emonet_s,emonet_m")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shipped", default="", help="comma list of shipped models / aliases to time as shipped")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds for --shipped (median reported)")
    args = ap.parse_args()
    if args.shipped:
        from emotionlab.models.onnx import cached_model_onnx
        from emotionlab.inference.quantize import machine_description
        from emotionlab.models.hub import load_model

        graphs = {}
        for name in args.shipped.split(","):
            lm = load_model(name)
            shape = (int(lm.card.get("in_chans", 1)), int(lm.card["in_size"]), int(lm.card["in_size"]))
            graphs[f"{name} ({lm.name})"] = (cached_model_onnx(lm), shape)
        print(machine_description(), f"{args.threads} thread(s)", flush=True)
        for b in (1, 64):
            times = {k: [] for k in graphs}
            for _ in range(args.rounds):
                for k, (g, shape) in graphs.items():
                    times[k].append(graph_latency_ms(g, shape, runs=300, threads=args.threads, batch=b))
            for k, v in times.items():
                print(f"{k} batch {b}: {np.median(v):.3f} ms/face (median of {args.rounds} rounds; "
                      f"min {min(v):.3f}, max {max(v):.3f})", flush=True)
    tmp = Path(tempfile.mkdtemp())
    for name in [m for m in args.models.split(",") if m]:
        m = create_model(name).eval()
        path = tmp / f"{name}.onnx"
        _export_module(m, m.in_chans, m.in_size, path)  # the graph the face pipeline runs
        for b in (1, 64):
            ms = graph_latency_ms(path, (m.in_chans, m.in_size, m.in_size), runs=300, threads=args.threads, batch=b)
            print(f"{name} batch {b}: {ms:.3f} ms/face (median)", flush=True)

if __name__ == "__main__":
    main()
