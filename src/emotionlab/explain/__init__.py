"""Explain and stress-test face models: gradient heat maps, dataset-level average maps, occlusion studies.

``explain(model, x, method, target)`` gives a [0, 1] heat map at the input size for ``saliency``,
``guided-backprop`` or ``gradcam``; ``overlay`` draws it on the face crop. ``occlusion_study`` measures
accuracy with parts of the face hidden (seed 004).
"""
from __future__ import annotations

from .maps import (
                   METHODS,
                   GuidedReLU,
                   default_head,
                   explain,
                   find_gradcam_layer,
                   gradcam,
                   guided_backprop,
                   guided_relus,
                   normalize_map,
                   overlay,
                   saliency,
)

__all__ = ["METHODS", "GuidedReLU", "default_head", "explain", "find_gradcam_layer", "gradcam", "guided_backprop",
           "guided_relus", "normalize_map", "overlay", "saliency"]
