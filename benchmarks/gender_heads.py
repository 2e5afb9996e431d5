"""Apparent gender: (a) a separate small CNN vs (b) a head on the frozen backbone of the shipped emotion model.

Both are scored on the same held-out UTKFace test split (data/utkface.py: MD5-grouped, stratified by
gender x race x age band), with the same crops (detector box + crop_face, 48 px gray) and the group report
of training/fairness.py. (b) freezes every emotion weight, so emotion accuracy is unchanged by construction;
the script checks that the emotion model's state dict hashes the same before and after fitting the heads.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gender_heads.py \\
        --data ../shared/data/utkface --gender-model runs/gender_utkface --json out/gender_heads.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emotionlab.data.utkface import load_utkface
from emotionlab.inference.detectors import utkface_detector
from emotionlab.models.hub import load_model
from emotionlab.training.engine import predict_proba, to_input
from emotionlab.training.fairness import group_report


def state_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def features(model: nn.Module, images_u8: np.ndarray, pre, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Frozen backbone features: the pooled vector the emotion head sees, and the last spatial map flattened."""
    if not hasattr(model, "forward_features"):
        raise SystemExit(f"{type(model).__name__} has no forward_features(); (b) needs a backbone / head split")
    model.eval()
    pooled, spatial = [], []
    for i in range(0, len(images_u8), batch):
        f = model.forward_features(to_input(torch.from_numpy(images_u8[i:i + batch]), pre))
        pooled.append(f.mean((2, 3)).numpy())
        spatial.append(f.flatten(1).numpy())
    return np.concatenate(pooled), np.concatenate(spatial)


def fit_linear(xtr, ytr, xva, yva, wds=(1e-4, 1e-3, 1e-2, 3e-2)) -> tuple[nn.Module, dict]:
    """Logistic regression (full-batch L-BFGS), weight decay chosen on validation."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    tr = torch.from_numpy((xtr - mu) / sd).float()
    va = torch.from_numpy((xva - mu) / sd).float()
    ytr_t = torch.from_numpy(ytr)
    best = None
    for wd in wds:
        torch.manual_seed(0)
        head = nn.Linear(tr.shape[1], 2)
        opt = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=200, line_search_fn="strong_wolfe")

        def closure(opt=opt, head=head, wd=wd):
            opt.zero_grad()
            loss = F.cross_entropy(head(tr), ytr_t) + wd * head.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            acc = float((head(va).argmax(1).numpy() == yva).mean())
        if best is None or acc > best[1]["val_acc"]:
            best = (head, {"val_acc": acc, "weight_decay": wd})
    head, info = best
    norm = nn.Sequential(_Standardize(mu, sd), head)
    return norm, info


class _Standardize(nn.Module):
    def __init__(self, mu, sd):
        super().__init__()
        self.register_buffer("mu", torch.from_numpy(mu).float())
        self.register_buffer("sd", torch.from_numpy(sd).float())

    def forward(self, x):
        return (x - self.mu) / self.sd


def fit_mlp(xtr, ytr, xva, yva, hidden: int = 256, epochs: int = 40, seed: int = 0) -> tuple[nn.Module, dict]:
    """Two-layer MLP head (Adam, dropout), the epoch with the best validation accuracy kept."""
    torch.manual_seed(seed)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    net = nn.Sequential(_Standardize(mu, sd), nn.Linear(xtr.shape[1], hidden), nn.ReLU(), nn.Dropout(0.3),
                        nn.Linear(hidden, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    tr, ytr_t = torch.from_numpy(xtr).float(), torch.from_numpy(ytr)
    va = torch.from_numpy(xva).float()
    best_acc, best_state, best_ep = -1.0, None, 0
    g = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        net.train()
        for idx in torch.randperm(len(tr), generator=g).split(256):
            opt.zero_grad()
            F.cross_entropy(net(tr[idx]), ytr_t[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = float((net(va).argmax(1).numpy() == yva).mean())
        if acc > best_acc:
            best_acc, best_ep = acc, ep + 1
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    return net.eval(), {"val_acc": best_acc, "best_epoch": best_ep, "hidden": hidden}


def summary(name: str, y, pred, u, m) -> dict:
    r = group_report(y, pred, u.age[m], u.race[m])
    keep = ("accuracy", "adults_accuracy", "gap_race", "gap_age", "gap")
    return {"name": name, **{k: r[k] for k in keep}, "children_accuracy": r["children"]["accuracy"],
            "by_race": {k: v["accuracy"] for k, v in r["by_race"].items()},
            "by_age": {k: v["accuracy"] for k, v in r["by_age"].items()}}


def ms_per_face(fn, x: torch.Tensor, repeat: int = 5) -> float:
    fn(x)
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(x)
        t.append(time.perf_counter() - t0)
    return 1000 * float(np.median(t)) / len(x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/utkface")
    ap.add_argument("--emotion-model", default="default", help="The shipped emotion model whose backbone is frozen.")
    ap.add_argument("--gender-model", default="gender", help="(a): the separate gender CNN (run dir or shipped).")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    emo = load_model(args.emotion_model)
    gen = load_model(args.gender_model)
    sp = gen.card.get("training", {}).get("split") or {}
    u = load_utkface(args.data, size=emo.preprocess.size, seed=int(sp.get("seed", 0)),
                     val_frac=float(sp.get("val_frac", 0.1)), test_frac=float(sp.get("test_frac", 0.2)),
                     detector=utkface_detector())
    masks = {k: u.mask(k) for k in ("train", "val", "test")}
    before = state_hash(emo.model)
    t0 = time.perf_counter()
    pooled, spatial = features(emo.model, u.images, emo.preprocess)
    t_feat = time.perf_counter() - t0
    y = u.gender
    tr, va, te = masks["train"], masks["val"], masks["test"]
    results, heads = [], {}
    for name, x in (("b_linear_pooled", pooled), ("b_linear_spatial", spatial)):
        head, info = fit_linear(x[tr], y[tr], x[va], y[va])
        with torch.no_grad():
            pred = head(torch.from_numpy(x[te]).float()).argmax(1).numpy()
        results.append({**summary(name, y[te], pred, u, te), **info, "head_params": sum(
            p.numel() for p in head.parameters())})
        heads[name] = head
    for name, x in (("b_mlp_pooled", pooled), ("b_mlp_spatial", spatial)):
        head, info = fit_mlp(x[tr], y[tr], x[va], y[va])
        with torch.no_grad():
            pred = head(torch.from_numpy(x[te]).float()).argmax(1).numpy()
        results.append({**summary(name, y[te], pred, u, te), **info, "head_params": sum(
            p.numel() for p in head.parameters())})
        heads[name] = head
    after = state_hash(emo.model)

    pa = predict_proba(gen.model, u.images[te], gen.preprocess)
    pa_val = predict_proba(gen.model, u.images[va], gen.preprocess)
    results.insert(0, {**summary("a_separate_cnn", y[te], pa.argmax(1), u, te),
                       "val_acc": float((pa_val.argmax(1) == y[va]).mean()),
                       "params": sum(p.numel() for p in gen.model.parameters()), "arch": gen.card.get("arch")})

    x64 = to_input(torch.from_numpy(u.images[te][:256]), gen.preprocess)
    with torch.inference_mode():
        cost_a = ms_per_face(lambda x: gen.model(x), x64)
        f64 = torch.from_numpy(spatial[te][:256]).float()
        cost_b = ms_per_face(lambda x: heads["b_mlp_spatial"](x), f64)
        cost_emo = ms_per_face(lambda x: emo.model(x), x64)
    report = {
        "date": time.strftime("%Y-%m-%d"), "threads": args.threads, "emotion_model": emo.name,
        "emotion_arch": emo.card.get("arch"), "gender_model": gen.name, "data": args.data,
        "split": u.report.get("split"), "crop": u.report.get("crop"),
        "emotion_weights_sha256_before": before, "emotion_weights_sha256_after": after,
        "emotion_weights_unchanged": before == after, "feature_seconds": round(t_feat, 1),
        "feature_dims": {"pooled": int(pooled.shape[1]), "spatial": int(spatial.shape[1])},
        "ms_per_face_pytorch_batch256": {"a_extra_cnn": round(cost_a, 4), "b_extra_head": round(cost_b, 4),
                                         "emotion_model": round(cost_emo, 4)},
        "results": results,
    }
    print(f"{'variant':18} {'val':>6} {'test':>6} {'adults':>6} {'child':>6} {'gap_race':>8} {'gap_age':>8}")
    for r in results:
        print(f"{r['name']:18} {r['val_acc']:6.4f} {r['accuracy']:6.4f} {r['adults_accuracy']:6.4f} "
              f"{r['children_accuracy']:6.4f} {r['gap_race']:8.4f} {r['gap_age']:8.4f}")
    print(f"emotion weights unchanged: {before == after}; ms/face {report['ms_per_face_pytorch_batch256']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
