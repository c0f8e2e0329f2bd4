"""An adaptation network in front of a backbone: by default a ResNet-18 from torchvision's blocks.

    encrypted image -> adapt (pixel | invariant | tanaka | blockset | none) -> 32 channels at H x W
                    -> stem: conv1 -> bn1 -> relu [-> maxpool] -> layer1..layer4 -> avgpool -> fc

Any torchvision classifier may replace the ResNet-18 (``--arch``, arch.py): :func:`build_model`
builds either from a :class:`ModelSpec`, which is what the run record keeps.

``pixel`` is [P]'s: adapt.conv1 (1x1, C -> 8) -> adapt.conv2 (1x1, 8 -> 32), no bias, no norm,
no activation ([P]'s figure). A 1x1 convolution sees one pixel at a time, so it can learn to
undo a per-pixel colour mixing but never looks across pixels, which is what keeps the model
blind to where masks move under shift and flip.

``invariant`` is the same two convolutions behind a fixed first step that computes what the
cipher's pixel group leaves unchanged (:func:`invariant_statistic`). Under a key drawn
uniformly, a ciphertext pixel is uniformly one of the images of its plain pixel under the
group, so that statistic is sufficient: nothing a model could learn from such data is lost,
and the network no longer has to discover the invariance from examples — under a dataset key
moved by shifts, or under a key per image, that discovery is what stalls [P]'s network.

``tanaka`` is the block-wise baselines' (Tanaka, ICCE-TW 2018, as [P] trains LE):
BN -> BxB stride-B conv C -> 48 -> ReLU -> BN -> 1x1 conv 48 -> 48 -> ReLU -> BN -> 1x1 conv
48 -> B*B*32 -> pixel shuffle xB. One output position of the first convolution is exactly
one cipher block, so the network can learn the block's fixed permutation and inversion; the
pixel shuffle spreads the block's 48 features back over its BxB pixels. [P] gives 4x4 blocks
and 48 -> 512 = 16 x 32, i.e. 32 channels at full resolution, the same as ``pixel``'s output:
we keep 32 for any block size B, so the ResNet behind either network is identical.

The stem (``stem``): ``cifar`` is the form (3x3, stride 1, no max-pool) that [P]'s 92.98 % on
32x32 plain images points to; ``imagenet`` is torchvision's (7x7 stride 2, then a 3x3 stride-2
max-pool), which divides the activations' area by 16 for photos of 64 px and more
(:func:`stem_for`). Layer names are torchvision's, so its state-dict tooling and habits apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1, conv3x3

from .blockset import BlockSetAdaptation
from .arch import DEFAULT_ARCH, STEM_AUTO_MAX, STEMS, stem_for, torchvision_backbone  # noqa: F401 (stem_for, STEM_AUTO_MAX: model's API)
from .settings import ADAPT_CHOICES, adapt_name

INVARIANT_GROUPS = ("identity", "negations", "signed-permutations")  # manifest cipher.pixel_group values it handles
ADAPT_CHANNELS = (8, 32)  # [P]: C1 has 8 maps, C2 has 32
TANAKA_CHANNELS = 48  # Tanaka's hidden maps
ADAPT_OUT = 32  # channels every adaptation network hands the ResNet stem
TANAKA_BLOCK = 4  # Tanaka's block side, for datasets whose manifest names none
RESNET18_BLOCKS = (2, 2, 2, 2)
BLOCK_ADAPTATIONS = ("tanaka", "blockset")  # the networks that take the cipher's block side


class AdaptationNetwork(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.conv1 = conv1x1(in_channels, ADAPT_CHANNELS[0])
        self.conv2 = conv1x1(ADAPT_CHANNELS[0], ADAPT_CHANNELS[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


def invariant_statistic(x: torch.Tensor, group: str) -> torch.Tensor:
    """What pixel group ``group`` leaves unchanged, per pixel of normalised N x C x H x W ``x``
    (v -> (v - 127.5) / 127.5, so the NP transform v -> 255 - v is a sign change): ``x`` itself
    for ``identity``, |x| per component for ``negations``, |x| sorted across the components for
    ``signed-permutations`` (every negation and colour order). Exact in floating point: a
    ciphertext and its plaintext give bit-identical statistics."""
    if group == "identity":
        return x
    if group == "negations":
        return x.abs()
    if group == "signed-permutations":
        return x.abs().sort(dim=1).values
    raise ValueError(f"no invariant statistic for pixel group {group!r} (handled: {', '.join(INVARIANT_GROUPS)})")


class InvariantAdaptation(AdaptationNetwork):
    """[P]'s two 1x1 convolutions on the group-invariant statistic of each pixel."""

    def __init__(self, in_channels: int, group: str):
        if group not in INVARIANT_GROUPS:
            raise ValueError(f"--adapt invariant needs a pixel group of {', '.join(INVARIANT_GROUPS)}, not {group!r}")
        super().__init__(in_channels)
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(invariant_statistic(x, self.group))


def block_conv(in_planes: int, out_planes: int, block: int) -> nn.Conv2d:
    """One output per BxB block: kernel and stride are the block side."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=block, stride=block)


def pointwise(in_planes: int, out_planes: int) -> nn.Conv2d:
    """1x1 convolution with bias (Tanaka's layers are plain convolutions; [P] is silent)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1)


class TanakaAdaptation(nn.Module):
    """Tanaka's block adaptation network for BxB block ciphers; input sides divisible by B."""

    def __init__(self, in_channels: int, block: int = TANAKA_BLOCK):
        super().__init__()
        self.block = block
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = block_conv(in_channels, TANAKA_CHANNELS, block)
        self.relu = nn.ReLU(inplace=True)
        self.bn2 = nn.BatchNorm2d(TANAKA_CHANNELS)
        self.conv2 = pointwise(TANAKA_CHANNELS, TANAKA_CHANNELS)
        self.bn3 = nn.BatchNorm2d(TANAKA_CHANNELS)
        self.conv3 = pointwise(TANAKA_CHANNELS, block * block * ADAPT_OUT)
        self.shuffle = nn.PixelShuffle(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(x)
        x = self.conv1(x)
        x = self.relu(x)
        x = self.bn2(x)
        x = self.conv2(x)
        x = self.relu(x)
        x = self.bn3(x)
        x = self.conv3(x)
        return self.shuffle(x)


ADAPTATIONS = {  # name -> (in_channels, block, group) -> module; the names are settings.ADAPT_CHOICES
    "pixel": lambda channels, block, group: AdaptationNetwork(channels),
    "invariant": lambda channels, block, group: InvariantAdaptation(channels, group),
    "tanaka": lambda channels, block, group: TanakaAdaptation(channels, block),
    "blockset": lambda channels, block, group: BlockSetAdaptation(channels, block, ADAPT_OUT),  # blockset.py
    "none": lambda channels, block, group: nn.Identity(),
}


def make_adaptation(adapt: str, in_channels: int, block: int, group: str | None = None) -> nn.Module:
    if adapt not in ADAPTATIONS:
        raise ValueError(f"unknown adaptation network {adapt!r} (choose from {', '.join(ADAPT_CHOICES)})")
    return ADAPTATIONS[adapt](in_channels, block, group)


def make_layer(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(conv1x1(in_planes, planes, stride), nn.BatchNorm2d(planes))
    layers = [BasicBlock(in_planes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class PrivacyResNet(nn.Module):
    """ResNet-18 at base width ``width`` with stem ``stem`` (``cifar`` or ``imagenet``), behind
    adaptation network ``adapt`` (``pixel``, ``invariant`` for pixel group ``group``, ``tanaka``
    with ``block``-sized blocks, or ``none``)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, adapt: str | bool = "pixel", block: int = TANAKA_BLOCK,
                 group: str | None = None, stem: str = "cifar"):  # fmt: skip
        super().__init__()
        adapt = adapt_name(adapt)
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r} (choose from {', '.join(STEMS)})")
        self.adapt = make_adaptation(adapt, in_channels, block, group)
        stem_in = in_channels if adapt == "none" else ADAPT_OUT
        if stem == "cifar":
            self.conv1 = conv3x3(stem_in, width)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(stem_in, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
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
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.adapt(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class PrivacyNet(nn.Module):
    """Adaptation network ``adapt`` in front of ``backbone`` (a torchvision classifier whose
    first convolution takes the adaptation network's output: arch.torchvision_backbone)."""

    def __init__(self, adapt: nn.Module, backbone: nn.Module):
        super().__init__()
        self.adapt = adapt
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.adapt(x))


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything that decides a network's shapes: the run record's model section and the
    dataset's image size (which the vision transformers are built for)."""

    arch: str = DEFAULT_ARCH
    in_channels: int
    num_classes: int
    width: int = 64  # cifar-resnet18's base width; torchvision's models have their own
    adapt: str = "pixel"
    block: int = TANAKA_BLOCK
    group: str | None = None
    stem: str = "cifar"
    height: int = 32
    image_width: int = 32


def build_model(spec: ModelSpec) -> nn.Module:
    """The network ``spec`` describes, randomly initialised (under the meta device: its shapes only)."""
    if spec.arch == DEFAULT_ARCH:
        return PrivacyResNet(spec.in_channels, spec.num_classes, width=spec.width, adapt=spec.adapt, block=spec.block,
                             group=spec.group, stem=spec.stem)  # fmt: skip
    adapt = make_adaptation(adapt_name(spec.adapt), spec.in_channels, spec.block, spec.group)
    stem_in = spec.in_channels if adapt_name(spec.adapt) == "none" else ADAPT_OUT
    backbone = torchvision_backbone(spec.arch, stem_in, spec.num_classes, spec.stem, spec.height, spec.image_width)
    return PrivacyNet(adapt, backbone)
