"""Model zoo: a timm-style registry of face-emotion architectures plus the shipped pretrained models."""
from __future__ import annotations

from . import emonet, zoo  # noqa: F401  (registers the architectures)
from .registry import count_mflops, count_params, create_model, get_entry, list_models, register_model

__all__ = ["create_model", "list_models", "register_model", "count_params", "count_mflops", "get_entry"]
