"""``embed_mlp``: MiniLM sentence embeddings + a bagged one-hidden-layer MLP (torch)."""
from __future__ import annotations

import numpy as np

from .base import _Backend, _sigmoid, _softmax, _val_score


class _EmbedMLP(_Backend):
    """MiniLM sentence embeddings + a one-hidden-layer MLP (torch), early-stopped on the validation split.

    ``n_models`` > 1 trains that many MLPs with different seeds and averages them (a cheap, honest boost).
    """

    kind = "embed_mlp"

    def __init__(self, hidden: int = 512, dropout: float = 0.3, epochs: int = 60, lr: float = 1e-3,
                 weight_decay: float = 1e-4, batch_size: int = 128, seed: int = 0, n_models: int = 1, **params):
        super().__init__(hidden=hidden, dropout=dropout, epochs=epochs, lr=lr, weight_decay=weight_decay,
                         batch_size=batch_size, seed=seed, n_models=n_models, **params)

    def _net(self, n_in: int, n_out: int):
        from torch import nn

        p = self.params
        return nn.Sequential(nn.Linear(n_in, p["hidden"]), nn.GELU(), nn.Dropout(p["dropout"]),
                             nn.Linear(p["hidden"], n_out))

    def fit(self, texts, y, n_classes, multi_label, val=None, x=None, x_val=None):
        from ..embed import embed_texts

        x = embed_texts(texts) if x is None else x
        if val is not None and x_val is None:
            x_val = embed_texts(val[0])
        self.multi_label = multi_label
        self.nets = [self._fit_one(x, y, n_classes, multi_label, val, x_val, self.params["seed"] + k)
                     for k in range(int(self.params["n_models"]))]
        return self

    def _fit_one(self, x, y, n_classes, multi_label, val, x_val, seed: int):
        import torch

        p = self.params
        torch.manual_seed(seed)
        net = self._net(x.shape[1], n_classes)
        xt = torch.from_numpy(np.asarray(x, np.float32))
        yt = torch.from_numpy(np.asarray(y, np.float32 if multi_label else np.int64))
        loss_fn = torch.nn.BCEWithLogitsLoss() if multi_label else torch.nn.CrossEntropyLoss()
        opt = torch.optim.AdamW(net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        best, best_state, bad = -1.0, None, 0
        g = torch.Generator().manual_seed(seed)
        for _ in range(p["epochs"]):
            net.train()
            for idx in torch.randperm(len(xt), generator=g).split(p["batch_size"]):
                opt.zero_grad()
                loss_fn(net(xt[idx]), yt[idx]).backward()
                opt.step()
            if x_val is None:
                continue
            score = _val_score(self._proba(x_val, [net]), np.asarray(val[1]), multi_label)
            if score > best + 1e-4:
                best, bad = score, 0
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
                if bad >= 8:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return net

    def _proba(self, x, nets=None) -> np.ndarray:
        import torch

        out = 0.0
        nets = nets or self.nets
        with torch.no_grad():
            for net in nets:
                net.eval()
                z = net(torch.from_numpy(np.asarray(x, np.float32))).numpy()
                out = out + (_sigmoid(z) if self.multi_label else _softmax(z))
        return out / len(nets)

    def scores(self, texts):
        from ..embed import embed_texts

        return self._proba(embed_texts(texts))

    def state(self):
        arrays = {f"net{i}.{k}": v.numpy() for i, net in enumerate(self.nets) for k, v in net.state_dict().items()}
        return ({"multi_label": self.multi_label, "n_in": self.nets[0][0].in_features,
                 "n_out": self.nets[0][3].out_features, "n_nets": len(self.nets)}, arrays)

    def load_state(self, cfg, arrays):
        import torch

        self.multi_label = cfg["multi_label"]
        self.nets = []
        for i in range(cfg.get("n_nets", 1)):
            net = self._net(cfg["n_in"], cfg["n_out"])
            pre = f"net{i}." if "n_nets" in cfg else "net."  # single-net files written before bagging
            net.load_state_dict({k[len(pre):]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()
                                 if k.startswith(pre)})
            net.eval()
            self.nets.append(net)
