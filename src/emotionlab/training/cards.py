"""The model card of a training run (``best.json``), built through :class:`emotionlab.models.card.ModelCard`."""
from __future__ import annotations

from datetime import datetime, timezone

from ..data.preprocess import PreprocessConfig
from ..models import count_mflops, count_params, create_model
from ..models.card import MODEL_FORMAT, ModelCard
from .config import TrainConfig
from .hardware import hardware_string

_SELECT_WORDS = {"accuracy": "accuracy", "macro_f1": "macro-F1"}


def model_card(model, cfg: TrainConfig, pre: PreprocessConfig, ls, val_metrics: dict, history, device,
               command: str, data_card: dict | None = None) -> ModelCard:
    """The card of a run's selected epoch: architecture, labels, preprocessing, the recipe and command that made
    it, where and when, and its validation metrics (test metrics come when it ships)."""
    last = history[-1] if history else {}
    arch_kwargs = getattr(model, "arch_kwargs", {})
    training = {
        "data": cfg.data,
        "ferplus": cfg.ferplus,
        "selection": f"best validation {_SELECT_WORDS[cfg.select]} (FER-2013 PublicTest); PrivateTest never "
                     "used in training",
        "recipe": cfg.to_dict(),
        "command": command,
        "epochs_run": last.get("epoch"),
        "img_s": last.get("img_s"),
        "hardware": hardware_string(device),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    if data_card:
        training.update(data_card)
        if "ferplus_rows" in data_card:
            training["selection"] = (f"best validation {_SELECT_WORDS[cfg.select]} on the FER+ majority "
                                     "labels of FER-2013 PublicTest; PrivateTest never used in training")
    return ModelCard(
        format=MODEL_FORMAT,
        name=cfg.model,
        arch=model.arch,
        arch_kwargs=arch_kwargs,
        num_classes=len(ls),
        label_set=ls.name,
        labels=list(ls.labels),
        in_size=model.in_size,
        in_chans=model.in_chans,
        preprocess=pre.to_dict(),
        params=count_params(model),
        mflops=round(count_mflops(create_model(model.arch, len(ls), model.in_size, model.in_chans, **arch_kwargs),
                                  model.in_size), 2),
        training=training,
        metrics={"validation": {k: val_metrics[k] for k in ("accuracy", "macro_f1", "weighted_f1", "n")}},
    )
