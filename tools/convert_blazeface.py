"""One-off converter: MediaPipe BlazeFace ``.tflite`` -> emotionlab detector assets (safetensors + JSON graph).

Run once by developers; the runtime only reads ``src/emotionlab/inference/assets/``. It needs the dev-only
PyPI package ``tflite`` (a flatbuffer reader) and the two models from the ``mediapipe==0.10.21`` wheel::

    pip download mediapipe==0.10.21 --no-deps -d /tmp/mp && cd /tmp/mp && unzip -q mediapipe-*.whl
    pip install --target /tmp/tflite_pkg tflite
    PYTHONPATH=/tmp/tflite_pkg python tools/convert_blazeface.py /tmp/mp/mediapipe/modules/face_detection \
        [--verify-with /tmp/mpvenv/bin/python]   # a throwaway venv with ai-edge-litert: exactness check

The TFLite graph (NHWC, fp16 weights behind DEQUANTIZE, sparse weights behind DENSIFY) is turned into a flat
list of ops that ``emotionlab.inference.blazeface.TFLiteGraph`` replays in PyTorch (NCHW). Constant ops are
folded here, so the runtime needs neither tflite nor mediapipe. The models are Apache-2.0 (Google, MediaPipe);
the license text is copied beside the weights.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

ASSETS = Path(__file__).resolve().parents[1] / "src" / "emotionlab" / "inference" / "assets"

# SSD anchor and decoding options copied from MediaPipe's face_detection_{short,full}_range.pbtxt graphs.
MODELS = {
    "blazeface_short": {
        "file": "face_detection_short_range.tflite",
        "input_size": 128,
        "anchors": {"num_layers": 4, "strides": [8, 16, 16, 16], "anchor_offset": 0.5,
                    "interpolated_scale_aspect_ratio": 1.0},
        "min_score": 0.5, "nms_iou": 0.3, "score_clip": 100.0,
    },
    "blazeface_full": {
        "file": "face_detection_full_range_sparse.tflite",
        "input_size": 192,
        "anchors": {"num_layers": 1, "strides": [4], "anchor_offset": 0.5,
                    "interpolated_scale_aspect_ratio": 0.0},
        "min_score": 0.5, "nms_iou": 0.3, "score_clip": 100.0,
    },
}


def _tflite():
    try:
        import tflite
    except ImportError:
        sys.exit("this converter needs the dev-only package `tflite` (pip install tflite)")
    import tflite

    return tflite


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in cls.__dict__.items() if not k.startswith("_") and isinstance(v, int)}


def _buffer(model, tensor) -> np.ndarray | None:
    tfl = _tflite()
    buf = model.Buffers(tensor.Buffer())
    if buf is None or buf.DataLength() == 0:
        return None
    raw = buf.DataAsNumpy().tobytes()
    dt = {tfl.TensorType.FLOAT32: np.float32, tfl.TensorType.FLOAT16: np.float16,
          tfl.TensorType.INT32: np.int32, tfl.TensorType.INT64: np.int64}[tensor.Type()]
    return np.frombuffer(raw, dtype=dt).copy()


def _index_vector(dm, which: str) -> np.ndarray:
    """A DimensionMetadata's array_segments / array_indices (a flatbuffer union of int vectors)."""
    tfl = _tflite()
    kind = getattr(dm, f"Array{which}Type")()
    table = getattr(dm, f"Array{which}")()
    cls = {tfl.SparseIndexVector.Int32Vector: tfl.Int32Vector, tfl.SparseIndexVector.Uint16Vector: tfl.Uint16Vector,
           tfl.SparseIndexVector.Uint8Vector: tfl.Uint8Vector}[kind]
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy().astype(np.int64)


def densify(values: np.ndarray, shape: list[int], sp) -> np.ndarray:
    """TFLite sparse tensor (traversal order, block map, DENSE / SPARSE_CSR levels) -> dense array."""
    order = sp.TraversalOrderAsNumpy().tolist()
    block_map = sp.BlockMapAsNumpy().tolist() if sp.BlockMapLength() else []
    metas = [sp.DimMetadata(i) for i in range(sp.DimMetadataLength())]
    n = len(shape)
    block_size = {block_map[j]: metas[n + j].DenseSize() for j in range(len(block_map))}
    out = np.zeros(shape, dtype=values.dtype)
    level_idx = [0] * len(order)
    segs = [(_index_vector(m, "Segments"), _index_vector(m, "Indices")) if m.Format() == 1 else None for m in metas]

    def leaf(pos: int) -> None:
        coord = [0] * n
        inner = [0] * n
        for lvl, d in enumerate(order):
            if d < n:
                coord[d] = level_idx[lvl]
            else:
                inner[block_map[d - n]] = level_idx[lvl]
        full = tuple(coord[d] * block_size.get(d, 1) + inner[d] for d in range(n))
        out[full] = values[pos]

    def rec(lvl: int, pos: int) -> None:
        if lvl == len(order):
            leaf(pos)
            return
        m = metas[lvl]
        if m.Format() == 0:
            size = m.DenseSize()
            for i in range(size):
                level_idx[lvl] = i
                rec(lvl + 1, pos * size + i)
        else:
            s, idx = segs[lvl]
            for k in range(s[pos], s[pos + 1]):
                level_idx[lvl] = int(idx[k])
                rec(lvl + 1, k)

    rec(0, 0)
    return out


def convert(tflite_path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """-> (graph JSON, tensors) with weights already in PyTorch layout."""
    tfl = _tflite()
    ops_names = _enum_names(tfl.BuiltinOperator)
    act_names = _enum_names(tfl.ActivationFunctionType)
    model = tfl.Model.GetRootAsModel(tflite_path.read_bytes(), 0)
    g = model.Subgraphs(0)
    consts: dict[int, np.ndarray] = {}
    for t in range(g.TensorsLength()):
        ten = g.Tensors(t)
        arr = _buffer(model, ten)
        if arr is None:
            continue
        shape = ten.ShapeAsNumpy().tolist() if ten.ShapeLength() else []
        if ten.Sparsity() is not None:
            arr = densify(arr, shape, ten.Sparsity())
        else:
            arr = arr.reshape(shape)
        consts[t] = arr

    def opts(op, cls):
        o = cls()
        tab = op.BuiltinOptions()
        o.Init(tab.Bytes, tab.Pos)
        return o

    tensors: dict[str, torch.Tensor] = {}
    ops: list[dict] = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = ops_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        out = op.Outputs(0)
        if name in ("DEQUANTIZE", "DENSIFY"):  # constant folding
            consts[out] = consts[ins[0]].astype(np.float32)
            continue
        if name == "CONV_2D":
            o = opts(op, tfl.Conv2DOptions)
            w = consts[ins[1]].astype(np.float32).transpose(0, 3, 1, 2)  # OHWI -> OIHW
            key = f"op{i}"
            tensors[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
            tensors[f"{key}.bias"] = torch.from_numpy(consts[ins[2]].astype(np.float32))
            ops.append({"op": "conv", "key": key, "in": ins[0], "out": out, "stride": o.StrideH(), "groups": 1,
                        "padding": "SAME" if o.Padding() == tfl.Padding.SAME else "VALID",
                        "act": act_names[o.FusedActivationFunction()]})
        elif name == "DEPTHWISE_CONV_2D":
            o = opts(op, tfl.DepthwiseConv2DOptions)
            w = consts[ins[1]].astype(np.float32).transpose(3, 0, 1, 2)  # 1HWC -> C1HW
            key = f"op{i}"
            tensors[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
            tensors[f"{key}.bias"] = torch.from_numpy(consts[ins[2]].astype(np.float32))
            ops.append({"op": "conv", "key": key, "in": ins[0], "out": out, "stride": o.StrideH(),
                        "groups": int(w.shape[0]), "padding": "SAME" if o.Padding() == tfl.Padding.SAME else "VALID",
                        "act": act_names[o.FusedActivationFunction()]})
        elif name == "ADD":
            o = opts(op, tfl.AddOptions)
            ops.append({"op": "add", "in": ins, "out": out, "act": act_names[o.FusedActivationFunction()]})
        elif name == "RELU":
            ops.append({"op": "relu", "in": ins[0], "out": out})
        elif name == "PRELU":
            key = f"op{i}"
            tensors[f"{key}.alpha"] = torch.from_numpy(consts[ins[1]].astype(np.float32).reshape(-1))
            ops.append({"op": "prelu", "key": key, "in": ins[0], "out": out})
        elif name == "PAD":
            pads = consts[ins[1]].astype(int).tolist()  # [[0,0],[top,bottom],[left,right],[c0,c1]] in NHWC
            ops.append({"op": "pad", "in": ins[0], "out": out, "pads": pads})
        elif name == "MAX_POOL_2D":
            o = opts(op, tfl.Pool2DOptions)
            ops.append({"op": "maxpool", "in": ins[0], "out": out, "k": o.FilterHeight(), "stride": o.StrideH(),
                        "padding": "SAME" if o.Padding() == tfl.Padding.SAME else "VALID"})
        elif name == "RESHAPE":
            shape = g.Tensors(out).ShapeAsNumpy().tolist()
            ops.append({"op": "reshape", "in": ins[0], "out": out, "shape": shape[1:]})
        elif name == "CONCATENATION":
            o = opts(op, tfl.ConcatenationOptions)
            ops.append({"op": "concat", "in": ins, "out": out, "axis": o.Axis()})
        elif name == "RESIZE_BILINEAR":
            o = opts(op, tfl.ResizeBilinearOptions)
            size = consts[ins[1]].astype(int).tolist()
            ops.append({"op": "resize", "in": ins[0], "out": out, "size": size,
                        "align_corners": bool(o.AlignCorners()), "half_pixel": bool(o.HalfPixelCenters())})
        elif name == "DEPTH_TO_SPACE":
            o = opts(op, tfl.DepthToSpaceOptions)
            ops.append({"op": "depth_to_space", "in": ins[0], "out": out, "block": o.BlockSize()})
        else:
            raise SystemExit(f"{tflite_path}: op {i} {name} is not supported by the converter")
    outputs = {g.Tensors(g.Outputs(i)).Name().decode(): g.Outputs(i) for i in range(g.OutputsLength())}
    by_shape = {tuple(g.Tensors(t).ShapeAsNumpy().tolist())[-1]: t for t in outputs.values()}
    graph = {"input": g.Inputs(0), "input_shape_nhwc": g.Tensors(g.Inputs(0)).ShapeAsNumpy().tolist(),
             "regressors": by_shape[16], "classificators": by_shape[1], "ops": ops}
    return graph, tensors


def main(src_dir: str) -> None:
    src = Path(src_dir)
    ASSETS.mkdir(parents=True, exist_ok=True)
    for name, spec in MODELS.items():
        graph, tensors = convert(src / spec["file"])
        meta = {k: v for k, v in spec.items()}
        meta["source"] = f"mediapipe==0.10.21 wheel: mediapipe/modules/face_detection/{spec['file']}"
        meta["license"] = "Apache-2.0 (Google LLC, MediaPipe); see LICENSE-mediapipe.txt"
        meta["graph"] = graph
        # fp16 storage halves the files; the TFLite weights were fp16 to begin with (exact round-trip).
        save_file({k: v.half().contiguous() for k, v in tensors.items()}, str(ASSETS / f"{name}.safetensors"))
        (ASSETS / f"{name}.json").write_text(json.dumps(meta, indent=1))
        for suffix in (".safetensors", ".json"):
            (ASSETS / f"{name}{suffix}").chmod(0o644)
        n = sum(v.numel() for v in tensors.values())
        err = max(float((v.half().float() - v).abs().max()) for v in tensors.values())
        if err > 0:
            raise SystemExit(f"{name}: some weights are not exactly fp16 (max error {err}); store fp32 instead")
        print(f"{name}: {len(graph['ops'])} ops, {n:,} weights -> {ASSETS / name}.safetensors")


LITERT_SCRIPT = r"""
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
d = np.load(sys.argv[1]); out = {}
for name, path in (("short", sys.argv[3]), ("full", sys.argv[4])):
    it = Interpreter(model_path=path); it.allocate_tensors()
    inp, outs = it.get_input_details()[0], it.get_output_details()
    regs, cls = [], []
    for x in d[name]:
        it.set_tensor(inp["index"], x[None]); it.invoke()
        o = {tuple(od["shape"])[-1]: it.get_tensor(od["index"]) for od in outs}
        regs.append(o[16][0]); cls.append(o[1][0])
    out[name + "_reg"], out[name + "_cls"] = np.stack(regs), np.stack(cls)
np.savez(sys.argv[2], **out)
"""


def verify(src_dir: str, litert_python: str) -> None:
    """Compare our replay with the TFLite interpreter (``ai-edge-litert`` in another venv) on the sample photos."""
    import subprocess
    import tempfile

    import cv2

    sys.path.insert(0, str(ASSETS.parents[2]))
    from emotionlab.inference.blazeface import BlazeFace

    examples = sorted((ASSETS.parents[3] / "examples").glob("*.jpg"))
    imgs = [cv2.imread(str(p)) for p in examples]
    imgs.append(np.random.default_rng(0).integers(0, 255, (480, 640, 3)).astype(np.uint8))
    nets = {n: BlazeFace(f"blazeface_{n}", backend="torch") for n in ("short", "full")}
    x = {n: np.concatenate([m.preprocess(im)[0] for im in imgs]) for n, m in nets.items()}
    with tempfile.TemporaryDirectory() as td:
        np.savez(f"{td}/in.npz", **{n: v.transpose(0, 2, 3, 1).copy() for n, v in x.items()})
        (Path(td) / "run.py").write_text(LITERT_SCRIPT)
        src = Path(src_dir)
        subprocess.run([litert_python, f"{td}/run.py", f"{td}/in.npz", f"{td}/out.npz",
                        str(src / MODELS["blazeface_short"]["file"]), str(src / MODELS["blazeface_full"]["file"])],
                       check=True)
        ref = dict(np.load(f"{td}/out.npz"))
    for n, m in nets.items():
        r, c = m._run(x[n])
        print(f"{n}: max |regressor diff| {np.abs(r - ref[n + '_reg']).max():.5f} "
              f"(|values| up to {np.abs(ref[n + '_reg']).max():.0f}), max |logit diff| "
              f"{np.abs(c - ref[n + '_cls']).max():.5f} on {len(imgs)} images")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Convert MediaPipe BlazeFace .tflite models to emotionlab assets.")
    ap.add_argument("src", nargs="?", default="/tmp/mp/mediapipe/modules/face_detection",
                    help="folder holding the two .tflite files (from the mediapipe wheel)")
    ap.add_argument("--verify-with", metavar="PYTHON", default=None,
                    help="a python with ai-edge-litert installed: compare raw outputs with the TFLite interpreter")
    args = ap.parse_args()
    main(args.src)
    if args.verify_with:
        verify(args.src, args.verify_with)
