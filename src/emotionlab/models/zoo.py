"""The classic architectures of the face-emotion literature, adapted to small grayscale inputs.

All models return logits (softmax is applied by the loss or by ``predict``). A model may carry an ``l2``
dict {parameter-name prefix: coefficient}: the trainer puts those parameters in their own weight-decay group,
which is how Keras-style per-layer L2 regularizers are reproduced.
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _flat_dim(features: nn.Module, in_chans: int, in_size: int) -> int:
    with torch.no_grad():
        was = features.training
        features.eval()
        n = features(torch.zeros(1, in_chans, in_size, in_size)).numel()
        features.train(was)
    return n


# --------------------------------------------------------------------------------------------- seed_cnn
class SeedCNN(nn.Module):
    """Deep classic CNN of seed 000: conv/BN/pool blocks with 25% dropout, a 3-layer dense head."""

    def __init__(self, num_classes: int = 7, in_size: int = 48, in_chans: int = 1, dropout: float = 0.25):
        super().__init__()
        widths = [(in_chans, 64), (64, 128), (128, 256), (256, 512)]
        blocks: list[nn.Module] = []
        for i, (cin, cout) in enumerate(widths):
            blocks += [conv_bn(cin, cout), conv_bn(cout, cout) if i < 2 else nn.Identity(),
                       nn.MaxPool2d(2), nn.Dropout(dropout)]
        self.features = nn.Sequential(*blocks)
        flat = _flat_dim(self.features, in_chans, in_size)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )
        # Keras' kernel_regularizer=l2(0.01) on the first conv layers, as in the seed notebook.
        self.l2 = {"features.0.0.weight": 1e-3, "features.1.0.weight": 1e-3}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model(description="deep classic CNN (seed 000): conv/BN/pool blocks, 25% dropout, L2, 3 dense layers")
def seed_cnn(num_classes: int = 7, in_size: int = 48, in_chans: int = 1, **kw) -> nn.Module:
    return SeedCNN(num_classes, in_size, in_chans, **kw)


# ----------------------------------------------------------------------------------------- mini_xception
class SeparableConv(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False))


class XceptionBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.residual = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))
        self.body = nn.Sequential(
            SeparableConv(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            SeparableConv(cout, cout), nn.BatchNorm2d(cout),
            nn.MaxPool2d(3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.residual(x)


class MiniXception(nn.Module):
    """Arriaga et al. 2017: 4 residual depthwise-separable blocks, global average pooling, no dense layer."""

    def __init__(self, num_classes: int = 7, in_size: int = 48, in_chans: int = 1,
                 widths: tuple[int, ...] = (16, 32, 64, 128), stem: int = 8):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(in_chans, stem), conv_bn(stem, stem))
        blocks, cin = [], stem
        for w in widths:
            blocks.append(XceptionBlock(cin, w))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, num_classes, 3, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.head(self.blocks(self.stem(x)))).flatten(1)


@register_model(description="mini-Xception (Arriaga et al. 2017), ~60k parameters")
def mini_xception(num_classes: int = 7, in_size: int = 48, in_chans: int = 1, **kw) -> nn.Module:
    return MiniXception(num_classes, in_size, in_chans, **kw)


# ----------------------------------------------------------------------------------------- alexnet_small
class AlexNetSmall(nn.Module):
    """AlexNet-style: 5 convolutions, 3 fully connected layers with dropout."""

    def __init__(self, num_classes: int = 7, in_size: int = 48, in_chans: int = 1, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 64, 5, 1, 2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 5, 1, 2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, 1, 1), nn.ReLU(inplace=True),
            nn.AdaptiveMaxPool2d(3),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(256 * 9, 1024), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(1024, 512), nn.ReLU(inplace=True), nn.Linear(512, num_classes),
        )
        # He init: with PyTorch's default (kaiming_uniform, a=sqrt(5)) each conv/ReLU layer of this plain,
        # BN-free stack shrinks the signal variance ~6x, so at init the logits are ~constant and on FER-2013 the
        # net sat on the majority class for 3 epochs (docs/results_zoo_budget.md).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model(description="AlexNet-style: 5 conv + 3 FC with dropout, ~5M parameters")
def alexnet_small(num_classes: int = 7, in_size: int = 48, in_chans: int = 1, **kw) -> nn.Module:
    return AlexNetSmall(num_classes, in_size, in_chans, **kw)


# -------------------------------------------------------------------------------------------- simple_cnn
class SimpleCNN(nn.Module):
    """Seed 002's small CNN: three 3x3 convs (32, 64, 128) with 2x2 max-pools, dropout 0.1, dense 256."""

    def __init__(self, num_classes: int = 7, in_size: int = 48, in_chans: int = 1, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for w in (32, 64, 128):
            layers += [nn.Conv2d(cin, w, 3, 1, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers)
        flat = _flat_dim(self.features, in_chans, in_size)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, 256),
                                        nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(256, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model(default_size=50, sizes=(20, 50, 100),
                description="small CNN (seed 002) for 20/50/100 px: 226k / 1.27M / 4.8M parameters")
def simple_cnn(num_classes: int = 7, in_size: int = 50, in_chans: int = 1, **kw) -> nn.Module:
    return SimpleCNN(num_classes, in_size, in_chans, **kw)


# ---------------------------------------------------------------------------------------------- vgg16_bn
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, cfg, num_classes: int = 7, in_size: int = 48, in_chans: int = 1, dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(conv_bn(cin, v))
                cin = v
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin, 512), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                        nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                        nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model(description="VGG-16 with batch norm, dropout 0.3, for small grayscale input")
def vgg16_bn(num_classes: int = 7, in_size: int = 48, in_chans: int = 1, **kw) -> nn.Module:
    return VGG(_VGG16, num_classes, in_size, in_chans, **kw)


# ---------------------------------------------------------------------------------------------- resnet50
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(conv_bn(cin, width, 1), conv_bn(width, width, 3, stride),
                                  conv_bn(width, cout, 1, act=False))
        self.short = (nn.Identity() if stride == 1 and cin == cout
                      else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.short(x))


class ResNet(nn.Module):
    def __init__(self, block, depths, num_classes: int = 7, in_size: int = 48, in_chans: int = 1,
                 widths=(64, 128, 256, 512)):
        super().__init__()
        # Small inputs: a 3x3 stride-1 stem and no max-pool keep 48 px faces at 6x6 in the last stage.
        self.stem = conv_bn(in_chans, widths[0], 3, 1)
        stages, cin = [], widths[0]
        for i, (d, w) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(d):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


@register_model(description="ResNet-50 (bottleneck) with a small-input stem, trained from scratch")
def resnet50(num_classes: int = 7, in_size: int = 48, in_chans: int = 1, **kw) -> nn.Module:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_size, in_chans, **kw)
