"""EmoNet: our own family, a pre-activation-free ResNet with squeeze-excitation attention for 48 px faces.

Why this shape: the published 73-75% single models on FER-2013 are VGG/ResNet variants with heavy
augmentation; residual blocks train reliably from scratch on 28k images, SE attention adds channel
re-weighting (the "attention" ingredient of the better papers) at ~1% extra compute, and a stride-2 stem
keeps CPU cost low. Sizes:

* ``emonet_m``: the flagship recipe for a GPU (64..512 channels, 2 blocks per stage).
* ``emonet_s``: the same design at a quarter of the compute, trainable on a laptop CPU in hours.
* ``emonet_f``: ``emonet_s``'s dense blocks at two thirds of its width: 0.59 ms/face with ONNX Runtime on one
  core of an AVX-512 VM (``emonet_s`` 1.28 ms; benchmarks/onnx_latency.py), but ~1.7 ms on an AVX2-only core.
* ``emonet_n``: ``emonet_f`` at three quarters of its width with one block less: 28 MFLOPs, ~0.8 ms/face on one
  AVX2-only core (Zen 3), where ``emonet_f`` takes ~1.7 ms. At batch 1 ONNX Runtime runs these dense nets near the
  core's FMA peak, so the time follows the FLOPs: this is the size that keeps the ``fast`` budget on AVX2.
* ``emonet_t``: depthwise-separable blocks, 0.17 ms/face (0.42 ms on AVX2).
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model
from .zoo import conv_bn


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int, reduction: int = 8):
        super().__init__()
        hidden = max(8, ch // reduction)
        self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, hidden, 1), nn.ReLU(inplace=True),
                                nn.Conv2d(hidden, ch, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, se: bool = True, separable: bool = False):
        super().__init__()
        if separable:
            self.body = nn.Sequential(
                conv_bn(cin, cin, 3, stride, groups=cin), conv_bn(cin, cout, 1),
                conv_bn(cout, cout, 3, 1, groups=cout), conv_bn(cout, cout, 1, act=False))
        else:
            self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, act=False))
        self.se = SqueezeExcite(cout) if se else nn.Identity()
        if stride != 1 or cin != cout:
            # avg-pool + 1x1 conv instead of a strided 1x1 conv: keeps all input pixels and avoids the
            # torch 2.13 CPU channels_last crash with strided 1x1 convs.
            self.short = nn.Sequential(nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False) if stride > 1
                                       else nn.Identity(),
                                       nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        else:
            self.short = nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.body(x)) + self.short(x))


class EmoNet(nn.Module):
    def __init__(self, num_classes: int = 7, in_size: int = 48, in_chans: int = 1,
                 widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), stem: int = 32, se: bool = True,
                 separable: bool = False, dropout: float = 0.3):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(in_chans, stem, 3, 1), conv_bn(stem, widths[0], 3, 2))
        stages, cin = [], widths[0]
        for i, (w, d) in enumerate(zip(widths, depths)):
            blocks = []
            for j in range(d):
                blocks.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1, se=se, separable=separable))
                cin = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.forward_features(x)).flatten(1)))


@register_model(description="EmoNet-M (ours, flagship): SE-ResNet 64..512, GPU recipe")
def emonet_m(num_classes: int = 7, in_size: int = 48, in_chans: int = 1, **kw) -> nn.Module:
    return EmoNet(num_classes, in_size, in_chans, widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), **kw)


@register_model(description="EmoNet-S (ours): SE-ResNet 32..256, trainable on a laptop CPU")
def emonet_s(num_classes: int = 7, in_size: int = 48, in_chans: int = 1, **kw) -> nn.Module:
    kw.setdefault("stem", 24)
    return EmoNet(num_classes, in_size, in_chans, widths=(48, 96, 192, 384), depths=(1, 2, 2, 1), **kw)


@register_model(description="EmoNet-T (ours, fast): separable SE blocks for <1 ms/face on CPU")
def emonet_t(num_classes: int = 7, in_size: int = 48, in_chans: int = 1, **kw) -> nn.Module:
    kw.setdefault("stem", 16)
    kw.setdefault("dropout", 0.2)
    return EmoNet(num_classes, in_size, in_chans, widths=(32, 64, 128, 256), depths=(1, 2, 2, 1),
                  separable=True, **kw)


@register_model(description="EmoNet-N (ours, fast on AVX2): dense SE-ResNet 24..192, ~0.8 ms/face on one AVX2 core")
def emonet_n(num_classes: int = 7, in_size: int = 48, in_chans: int = 1, **kw) -> nn.Module:
    kw.setdefault("stem", 16)
    return EmoNet(num_classes, in_size, in_chans, widths=(24, 48, 96, 192), depths=(1, 1, 2, 1), **kw)


@register_model(description="EmoNet-F (ours): dense SE-ResNet 32..256, ~0.6 ms/face on AVX-512, ~1.7 on AVX2")
def emonet_f(num_classes: int = 7, in_size: int = 48, in_chans: int = 1, **kw) -> nn.Module:
    kw.setdefault("stem", 16)
    return EmoNet(num_classes, in_size, in_chans, widths=(32, 64, 128, 256), depths=(1, 2, 2, 1), **kw)
