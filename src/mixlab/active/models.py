"""Classifiers for the active-learning loop: a small MLP, a small CNN and a CIFAR-style
ResNet-18, each split into `features` (input -> penultimate embedding) and `head`
(dropout -> linear).

The split is what the query strategies need: `embed` gives the embeddings that core-set and
ALFA-Mix work on, `head` classifies (possibly interpolated) embeddings, and the dropout
layers, switched on at inference, give BALD its MC-dropout samples.
"""

from __future__ import annotations

import math

import torch
from torch import nn

MODELS = ("mlp", "cnn", "resnet18")


class Classifier(nn.Module):
    """logits = head(features(x)); embed(x) = features(x), the penultimate layer."""

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features = features
        self.head = head

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    width: int = 128,
    dropout: float = 0.25,
) -> Classifier:
    """A fresh, randomly initialised model (from torch's global RNG: seed it around the call).

    input_shape: (C, H, W). width: hidden units of the MLP, channels of the CNN's first
    block (the ResNet-18 keeps its own widths). dropout: rate of every dropout layer.
    """
    if name not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {name!r}")
    channels = input_shape[0]
    if name == "mlp":
        features = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), width),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(width, width),
            nn.ReLU(),
        )
        dim = width
    elif name == "cnn":
        features = nn.Sequential(
            _conv_block(channels, width // 4),
            _conv_block(width // 4, width // 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(width // 2, width),
            nn.ReLU(),
        )
        dim = width
    else:
        features, dim = _cifar_resnet18(channels), 512
    return Classifier(features, nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_classes)))


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """conv-BN-ReLU then 2x2 max-pool; ceil_mode keeps odd sizes (7x7 -> 4x4) alive."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
    )


def _cifar_resnet18(channels: int) -> nn.Module:
    """torchvision's ResNet-18 with the usual 32x32 adaptation: a 3x3 stride-1 stem and no
    max-pool (the ImageNet stem would shrink 32x32 to 8x8 before the first block); the fc
    layer is removed, the 512-d pooled features are the embedding."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


def mc_dropout(model: nn.Module, enabled: bool = True) -> None:
    """Put the model in eval mode with its dropout layers sampling (enabled) or not."""
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.train(enabled)
