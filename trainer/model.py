"""[P]'s adaptation network in front of a CIFAR-style ResNet-18, from torchvision's blocks.

    encrypted image -> adapt.conv1 (1x1, C -> 8) -> adapt.conv2 (1x1, 8 -> 32)
                    -> conv1 (3x3, stride 1) -> bn1 -> relu -> layer1..layer4 -> avgpool -> fc

The adaptation convolutions have no bias, no norm and no activation ([P]'s figure); a 1x1
convolution sees one pixel at a time, so it can learn to undo a per-pixel colour mixing but
never looks across pixels, which is what keeps the model blind to where masks move under
shift and flip. The stem is the CIFAR form (3x3, stride 1, no max-pool) that [P]'s 92.98 %
on 32x32 plain images points to. Layer names are torchvision's, so its state-dict tooling
and habits apply.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1, conv3x3

ADAPT_CHANNELS = (8, 32)  # [P]: C1 has 8 maps, C2 has 32
RESNET18_BLOCKS = (2, 2, 2, 2)


class AdaptationNetwork(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.conv1 = conv1x1(in_channels, ADAPT_CHANNELS[0])
        self.conv2 = conv1x1(ADAPT_CHANNELS[0], ADAPT_CHANNELS[1])

    @property
    def out_channels(self) -> int:
        return ADAPT_CHANNELS[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


def make_layer(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(conv1x1(in_planes, planes, stride), nn.BatchNorm2d(planes))
    layers = [BasicBlock(in_planes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class PrivacyResNet(nn.Module):
    """ResNet-18 (CIFAR form) at base width ``width``, optionally behind the adaptation network."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, adapt: bool = True):
        super().__init__()
        self.adapt = AdaptationNetwork(in_channels) if adapt else nn.Identity()
        stem_in = ADAPT_CHANNELS[1] if adapt else in_channels
        self.conv1 = conv3x3(stem_in, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        planes = [width * m for m in (1, 2, 4, 8)]
        ins = [width, *planes[:-1]]
        for i, (a, b, n) in enumerate(zip(ins, planes, RESNET18_BLOCKS)):
            self.add_module(f"layer{i + 1}", make_layer(a, b, n, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes[-1], num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's ResNet init, with the residual branch's last BN at zero so each block
        # starts as identity: the deep net trains like a shallow one in the first steps.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(self.adapt(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_model(in_channels: int, num_classes: int, width: int, adapt: bool) -> PrivacyResNet:
    return PrivacyResNet(in_channels, num_classes, width, adapt)
