"""BlazeFace (MediaPipe short- and full-range face detectors) replayed in PyTorch, without mediapipe.

``tools/convert_blazeface.py`` turned the Apache-2.0 ``.tflite`` models into a flat op list + safetensors
weights (``assets/``). :class:`TFLiteGraph` replays that list in NCHW; :class:`BlazeFace` adds MediaPipe's
pre-processing (letterbox to a square, RGB in [-1, 1]), SSD anchor decoding and weighted NMS, so the boxes
match what ``mediapipe.solutions.face_detection`` reports.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ASSETS = Path(__file__).resolve().parent / "assets"


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding: the extra pixel goes after (bottom / right), unlike PyTorch."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class TFLiteGraph(nn.Module):
    """Executes the converter's op list; tensors are NCHW until a head reshapes them to (B, anchors, k)."""

    def __init__(self, graph: dict, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.graph = graph
        self.params = nn.ParameterDict({k.replace(".", "_"): nn.Parameter(v.float(), requires_grad=False)
                                        for k, v in weights.items()})

    def _p(self, key: str, what: str) -> torch.Tensor:
        return self.params[f"{key}_{what}"]

    @staticmethod
    def _act(x: torch.Tensor, act: str) -> torch.Tensor:
        if act == "NONE":
            return x
        if act == "RELU":
            return F.relu(x)
        if act == "RELU6":
            return F.relu6(x)
        raise ValueError(f"unsupported fused activation {act}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 3, S, S) RGB in [-1, 1] -> (regressors (B, A, 16), raw scores (B, A, 1))."""
        t: dict[int, torch.Tensor] = {self.graph["input"]: x}
        for op in self.graph["ops"]:
            kind = op["op"]
            if kind == "conv":
                a = t[op["in"]]
                w = self._p(op["key"], "weight")
                if op["padding"] == "SAME":
                    k, s = w.shape[-1], op["stride"]
                    ph, pw = _same_pad(a.shape[2], k, s), _same_pad(a.shape[3], k, s)
                    if any(ph + pw):
                        a = F.pad(a, (pw[0], pw[1], ph[0], ph[1]))
                y = F.conv2d(a, w, self._p(op["key"], "bias"), stride=op["stride"], groups=op["groups"])
                t[op["out"]] = self._act(y, op["act"])
            elif kind == "add":
                t[op["out"]] = self._act(t[op["in"][0]] + t[op["in"][1]], op["act"])
            elif kind == "relu":
                t[op["out"]] = F.relu(t[op["in"]])
            elif kind == "prelu":
                a = t[op["in"]]
                t[op["out"]] = F.prelu(a, self._p(op["key"], "alpha"))
            elif kind == "pad":
                (_, _), (pt, pb), (pl, pr), (c0, c1) = op["pads"]
                t[op["out"]] = F.pad(t[op["in"]], (pl, pr, pt, pb, c0, c1))
            elif kind == "maxpool":
                a = t[op["in"]]
                k, s = op["k"], op["stride"]
                if op["padding"] == "SAME":
                    ph, pw = _same_pad(a.shape[2], k, s), _same_pad(a.shape[3], k, s)
                    if any(ph + pw):
                        a = F.pad(a, (pw[0], pw[1], ph[0], ph[1]), value=float("-inf"))
                t[op["out"]] = F.max_pool2d(a, k, s)
            elif kind == "reshape":
                a = t[op["in"]]
                if a.dim() == 4:
                    a = a.permute(0, 2, 3, 1)  # back to TFLite's NHWC element order
                t[op["out"]] = a.reshape(a.shape[0], *op["shape"])
            elif kind == "concat":
                t[op["out"]] = torch.cat([t[i] for i in op["in"]], dim=op["axis"])
            elif kind == "resize":
                if op["align_corners"] or not op["half_pixel"]:
                    raise ValueError("only half-pixel-centre bilinear resizing is supported")
                t[op["out"]] = F.interpolate(t[op["in"]], size=tuple(op["size"]), mode="bilinear",
                                             align_corners=False)
            elif kind == "depth_to_space":
                a = t[op["in"]]
                b, c, h, w = a.shape
                r = op["block"]
                a = a.reshape(b, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2)
                t[op["out"]] = a.reshape(b, c // (r * r), h * r, w * r)
            else:
                raise ValueError(f"unknown op {kind}")
        return t[self.graph["regressors"]], t[self.graph["classificators"]]


def ssd_anchors(input_size: int, num_layers: int, strides: list[int], anchor_offset: float = 0.5,
                interpolated_scale_aspect_ratio: float = 1.0) -> np.ndarray:
    """MediaPipe SsdAnchorsCalculator with fixed_anchor_size: (A, 2) anchor centres in [0, 1]."""
    out = []
    layer = 0
    while layer < num_layers:
        n_per_cell = 0
        last = layer
        while last < num_layers and strides[last] == strides[layer]:
            n_per_cell += 1 + (1 if interpolated_scale_aspect_ratio > 0 else 0)
            last += 1
        stride = strides[layer]
        fm = math.ceil(input_size / stride)
        for y in range(fm):
            for x in range(fm):
                for _ in range(n_per_cell):
                    out.append(((x + anchor_offset) / fm, (y + anchor_offset) / fm))
        layer = last
    return np.asarray(out, np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, kps: np.ndarray, iou_thr: float
                 ) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's WEIGHTED non-max suppression: overlapping boxes are averaged by score, not dropped."""
    order = np.argsort(-scores)
    remaining = list(order)
    result = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while remaining:
        top = remaining[0]
        rem = np.asarray(remaining)
        xx0 = np.maximum(boxes[top, 0], boxes[rem, 0])
        yy0 = np.maximum(boxes[top, 1], boxes[rem, 1])
        xx1 = np.minimum(boxes[top, 2], boxes[rem, 2])
        yy1 = np.minimum(boxes[top, 3], boxes[rem, 3])
        inter = np.clip(xx1 - xx0, 0, None) * np.clip(yy1 - yy0, 0, None)
        iou = inter / np.maximum(area[top] + area[rem] - inter, 1e-9)
        group = rem[iou > iou_thr]
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        kp = (kps[group] * w[:, :, None]).sum(0) / w.sum()
        result.append((box, float(scores[top]), kp))
        remaining = [r for r, o in zip(rem, iou) if o <= iou_thr]
    return result


@lru_cache(maxsize=4)
def _load_graph(name: str) -> tuple[dict, TFLiteGraph]:
    from safetensors.torch import load_file

    meta_path, w_path = ASSETS / f"{name}.json", ASSETS / f"{name}.safetensors"
    if not meta_path.exists() or not w_path.exists():
        raise FileNotFoundError(f"detector assets {w_path.name} / {meta_path.name} are missing from {ASSETS}; "
                                "run tools/convert_blazeface.py")
    meta = json.loads(meta_path.read_text())
    net = TFLiteGraph(meta["graph"], load_file(str(w_path))).eval()
    return meta, net


class BlazeFace:
    """One BlazeFace model: ``detect(image_bgr)`` -> list of (box xywh, score, 6 keypoints) in pixels."""

    def __init__(self, name: str = "blazeface_short", min_score: float | None = None, backend: str = "auto",
                 threads: int | None = None):
        self.name = name
        self.meta, self.net = _load_graph(name)
        self.size = int(self.meta["input_size"])
        self.min_score = float(min_score if min_score is not None else self.meta["min_score"])
        self.anchors = ssd_anchors(self.size, **self.meta["anchors"])
        self._run = self._torch_runner()
        if backend in ("auto", "onnx"):
            try:
                self._run = self._onnx_runner(threads)
            except Exception as e:
                if backend == "onnx":
                    raise RuntimeError(f"{name}: ONNX Runtime backend failed: {e}") from e
        self.backend = getattr(self._run, "backend", "torch")

    def _torch_runner(self):
        net = self.net

        def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode():
                r, c = net(torch.from_numpy(x))
            return r.numpy(), c.numpy()

        run.backend = "torch"
        return run

    def _onnx_runner(self, threads: int | None):
        from ..models.onnx import cached_onnx, ort_session

        path = cached_onnx(f"{self.name}", ASSETS / f"{self.name}.safetensors", self._export)
        sess = ort_session(path, int(threads or 1))

        def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            r, c = sess.run(None, {"image": x})
            return r, c

        run.backend = "onnxruntime"
        return run

    def _export(self, path: Path) -> None:
        import warnings

        x = torch.zeros(1, 3, self.size, self.size)
        with warnings.catch_warnings():  # tracer notes about the (fixed-size) padding arithmetic
            warnings.simplefilter("ignore")
            self._onnx_export(x, path)

    def _onnx_export(self, x: torch.Tensor, path: Path) -> None:
        torch.onnx.export(self.net, (x,), str(path), input_names=["image"], output_names=["regressors", "scores"],
                          dynamic_axes={"image": {0: "batch"}, "regressors": {0: "batch"}, "scores": {0: "batch"}},
                          opset_version=17, dynamo=False)

    def preprocess(self, image_bgr: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """Letterbox to a square of the model's size (as MediaPipe does); -> (input, scale, pad_x, pad_y)."""
        h, w = image_bgr.shape[:2]
        scale = self.size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        px, py = (self.size - nw) // 2, (self.size - nh) // 2
        canvas = np.zeros((self.size, self.size, 3), np.uint8)
        canvas[py:py + nh, px:px + nw] = small
        x = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).astype(np.float32) * (2.0 / 255.0) - 1.0
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), scale, px, py

    def detect(self, image_bgr: np.ndarray) -> list[tuple[tuple[float, float, float, float], float, np.ndarray]]:
        x, scale, px, py = self.preprocess(image_bgr)
        reg, cls = self._run(x)
        return self.decode(reg[0], cls[0, :, 0], scale, px, py, image_bgr.shape[:2])

    def decode(self, reg: np.ndarray, logits: np.ndarray, scale: float, px: int, py: int, hw) -> list:
        clip = float(self.meta.get("score_clip", 100.0))
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -clip, clip)))
        keep = np.nonzero(scores >= self.min_score)[0]
        if keep.size == 0:
            return []
        s = float(self.size)
        a = self.anchors[keep]
        r = reg[keep] / s
        cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
        bw, bh = r[:, 2], r[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        kps = r[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]
        out = []
        H, W = hw
        for box, score, kp in weighted_nms(boxes, scores[keep], kps, float(self.meta["nms_iou"])):
            # model square [0,1] -> letterboxed pixels -> original pixels
            x0, y0, x1, y1 = ((box * s) - np.array([px, py, px, py])) / scale
            x0, y0 = max(0.0, x0), max(0.0, y0)
            x1, y1 = min(float(W), x1), min(float(H), y1)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            kp_px = (kp * s - np.array([px, py])) / scale
            out.append(((x0, y0, x1 - x0, y1 - y0), score, kp_px))
        return out
