"""Would static int8 quantization make a shipped face model fast enough, and what does it cost in accuracy?

    .venv/bin/python benchmarks/int8_check.py [--model fast] [--calibration 512] [--json out/int8.json]

Why: on a CPU without AVX-512 EmoNet-F takes ~1.8 ms per face in ONNX Runtime. This quantizes the pipeline's own
ONNX graph (ONNX Runtime QDQ, per-channel int8 weights, uint8 activations, calibrated on the first N *Training*
faces), then times both graphs one face at a time on 1 thread and scores both on PrivateTest.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from emotionlab.data.paths import default_fer2013_csv  # noqa: E402  (the one default-data rule)


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from emotionlab.data.loader import load_dataset, train_val_test
    from emotionlab.data.preprocess import prepare_crops
    from emotionlab.inference.onnx_export import cached_model_onnx
    from emotionlab.models.hub import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fast")
    ap.add_argument("--data", default=str(default_fer2013_csv()))
    ap.add_argument("--calibration", type=int, default=512)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    lm = load_model(args.model)
    src = str(cached_model_onnx(lm))
    train, _, test = train_val_test(load_dataset(args.data, size=lm.card["in_size"]))
    cal = prepare_crops(train.images[:args.calibration], lm.preprocess)
    inp = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(cal):
                return None
            self.i += 32
            return {inp: cal[self.i - 32:self.i]}

    tmp = Path(tempfile.mkdtemp())
    quant_pre_process(src, str(tmp / "pre.onnx"))
    quantize_static(str(tmp / "pre.onnx"), str(tmp / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    xt = prepare_crops(test.images, lm.preprocess)
    res = {"model": lm.name, "date": time.strftime("%Y-%m-%d")}
    for tag, path in (("fp32", src), ("int8", str(tmp / "int8.onnx"))):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        for _ in range(20):
            s.run(None, {inp: xt[:1]})
        t = []
        for i in range(300):
            t0 = time.perf_counter()
            s.run(None, {inp: xt[i % len(xt):i % len(xt) + 1]})
            t.append(time.perf_counter() - t0)
        p = np.concatenate([s.run(None, {inp: xt[i:i + 256]})[0] for i in range(0, len(xt), 256)])
        res[tag] = {"ms_per_face": float(np.median(t) * 1000), "accuracy": float((p.argmax(1) == test.labels).mean())}
        print(tag, f"{res[tag]['ms_per_face']:.3f} ms/face (median, batch 1, 1 thread)",
              f"PrivateTest {res[tag]['accuracy']:.4f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
