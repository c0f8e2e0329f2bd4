"""The model is [P]'s: adaptation convolutions C->8->32 (1x1, no bias), then a CIFAR-style
ResNet-18 stem and torchvision's layer names."""

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from trainer.model import build_model


@pytest.mark.parametrize("channels", [1, 3])
def test_adaptation_network_shapes(channels):
    m = build_model(channels, 10, 64, adapt=True)
    sd = m.state_dict()
    assert sd["adapt.conv1.weight"].shape == (8, channels, 1, 1)
    assert sd["adapt.conv2.weight"].shape == (32, 8, 1, 1)
    assert sd["conv1.weight"].shape == (64, 32, 3, 3)
    assert sd["fc.weight"].shape == (10, 512)
    # [P]'s figure: no bias, no norm, no activation between the two adaptation convolutions.
    assert not any(k.startswith("adapt.") and not k.endswith("conv1.weight") and not k.endswith("conv2.weight") for k in sd)
    assert [type(c) for c in m.adapt.children()] == [nn.Conv2d, nn.Conv2d]


@pytest.mark.parametrize("channels", [1, 3])
def test_no_adapt_stem_takes_image_channels(channels):
    m = build_model(channels, 7, 64, adapt=False)
    sd = m.state_dict()
    assert sd["conv1.weight"].shape == (64, channels, 3, 3)
    assert not any(k.startswith("adapt.") for k in sd)
    assert sd["fc.weight"].shape == (7, 512)


def test_resnet18_layout_and_torchvision_names():
    m = build_model(3, 10, 64, adapt=True)
    assert m.conv1.stride == (1, 1) and m.conv1.kernel_size == (3, 3)  # CIFAR stem
    assert not any(isinstance(x, nn.MaxPool2d) for x in m.modules())
    for i, planes in enumerate((64, 128, 256, 512), 1):
        layer = getattr(m, f"layer{i}")
        assert len(layer) == 2 and all(isinstance(b, BasicBlock) for b in layer)
        assert layer[0].conv1.out_channels == planes
    # ResNet-18 (CIFAR form) with the adaptation network: 11.17 M + 8x3 + 32x8 + the 32-channel stem.
    n = sum(p.numel() for p in m.parameters())
    stem_extra = 64 * (32 - 3) * 9
    assert n == 11_173_962 + 3 * 8 + 8 * 32 + stem_extra


@pytest.mark.parametrize("width,shape", [(4, (1, 28, 28)), (8, (3, 32, 32))])
def test_forward_shapes_at_any_width(width, shape):
    m = build_model(shape[0], 5, width, adapt=True).eval()
    out = m(torch.zeros(2, *shape))
    assert out.shape == (2, 5)
    assert m.fc.in_features == 8 * width

