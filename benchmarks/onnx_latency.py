"""ONNX Runtime CPU latency per face of face architectures (weights do not change the time; no data needed).

    .venv/bin/python benchmarks/onnx_latency.py [--models emonet_t,emonet_n,emonet_f,emonet_s,emonet_m] [--threads 1]

Why: the `fast` model must stay under 1 ms per face with ONNX Runtime on this CPU; this is the check.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    import onnxruntime as ort

    from emotionlab.inference.onnx_export import _export_module
    from emotionlab.models import create_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="emonet_t,emonet_n,emonet_f,emonet_s,emonet_m")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    for name in args.models.split(","):
        m = create_model(name).eval()
        path = tmp / f"{name}.onnx"
        _export_module(m, m.in_chans, m.in_size, path)  # the graph the face pipeline runs
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        for b in (1, 64):
            x = np.random.randn(b, m.in_chans, m.in_size, m.in_size).astype(np.float32)
            for _ in range(10):
                sess.run(None, {"input": x})
            ts = []
            for _ in range(max(20, 300 // b)):
                t = time.perf_counter()
                sess.run(None, {"input": x})
                ts.append(time.perf_counter() - t)
            print(f"{name} batch {b}: {1000 * np.median(ts) / b:.3f} ms/face (median)", flush=True)


if __name__ == "__main__":
    main()
