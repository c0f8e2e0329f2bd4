"""The model is [P]'s: adaptation convolutions C->8->32 (1x1, no bias), then a CIFAR-style
ResNet-18 stem and torchvision's layer names; or Tanaka's block adaptation network in front of
the same ResNet (the block-wise baselines)."""

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from pptrain.model import PrivacyResNet


@pytest.mark.parametrize("channels", [1, 3])
def test_adaptation_network_shapes(channels):
    m = PrivacyResNet(channels, 10, 64, adapt="pixel")
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
    m = PrivacyResNet(channels, 7, 64, adapt="none")
    sd = m.state_dict()
    assert sd["conv1.weight"].shape == (64, channels, 3, 3)
    assert not any(k.startswith("adapt.") for k in sd)
    assert sd["fc.weight"].shape == (7, 512)


def test_resnet18_layout_and_torchvision_names():
    m = PrivacyResNet(3, 10, 64, adapt="pixel")
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
    m = PrivacyResNet(shape[0], 5, width, adapt="pixel").eval()
    out = m(torch.zeros(2, *shape))
    assert out.shape == (2, 5)
    assert m.fc.in_features == 8 * width



@pytest.mark.parametrize("channels,side,block", [(1, 28, 4), (3, 32, 4), (3, 32, 8), (1, 28, 7)])
def test_tanaka_network_layers_and_shapes(channels, side, block):
    """BN -> BxB stride-B conv C->48 -> ReLU -> BN -> 1x1 48->48 -> ReLU -> BN -> 1x1 48->B*B*32
    -> pixel shuffle xB: 32 channels at the image's full size, into the same ResNet stem."""
    m = PrivacyResNet(channels, 10, 8, adapt="tanaka", block=block).eval()
    sd = m.state_dict()
    assert sd["adapt.bn1.weight"].shape == (channels,)
    assert sd["adapt.conv1.weight"].shape == (48, channels, block, block) and m.adapt.conv1.stride == (block, block)
    assert sd["adapt.bn2.weight"].shape == (48,)
    assert sd["adapt.conv2.weight"].shape == (48, 48, 1, 1)
    assert sd["adapt.bn3.weight"].shape == (48,)
    assert sd["adapt.conv3.weight"].shape == (block * block * 32, 48, 1, 1)
    assert m.adapt.shuffle.upscale_factor == block
    assert [type(c) for c in m.adapt.children()] == [nn.BatchNorm2d, nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.Conv2d,
                                                     nn.BatchNorm2d, nn.Conv2d, nn.PixelShuffle]  # fmt: skip
    assert sd["conv1.weight"].shape == (8, 32, 3, 3)
    x = torch.randn(2, channels, side, side)
    assert m.adapt(x).shape == (2, 32, side, side)
    assert m(x).shape == (2, 10)


def test_tanaka_network_sees_one_block_per_position():
    """Its first convolution is the cipher's block grid: changing one pixel changes the
    adaptation output inside that pixel's 4x4 block and nowhere else."""
    torch.manual_seed(0)
    m = PrivacyResNet(3, 10, 8, adapt="tanaka", block=4).eval()
    x = torch.randn(1, 3, 32, 32)
    y = x.clone()
    y[0, 1, 13, 6] += 1.0  # block row 3, block column 1
    changed = (m.adapt(x) - m.adapt(y)).abs().sum(1)[0] > 0
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[12:16, 4:8] = True
    assert torch.equal(changed, expected)


def test_pixel_network_sees_one_pixel():
    torch.manual_seed(0)
    m = PrivacyResNet(3, 10, 8, adapt="pixel").eval()
    x = torch.randn(1, 3, 32, 32)
    y = x.clone()
    y[0, 1, 13, 6] += 1.0
    changed = (m.adapt(x) - m.adapt(y)).abs().sum(1)[0] > 0
    assert changed.nonzero().tolist() == [[13, 6]]


def test_adapt_flags_of_older_runs_still_build():
    """Run directories from before --adapt recorded True / False."""
    assert [type(c) for c in PrivacyResNet(1, 3, 4, adapt=True).adapt.children()] == [nn.Conv2d, nn.Conv2d]
    assert isinstance(PrivacyResNet(1, 3, 4, adapt=False).adapt, nn.Identity)


@pytest.mark.parametrize("side, stem", [(28, "cifar"), (32, "cifar"), (64, "cifar"), (65, "imagenet"), (128, "imagenet"), (224, "imagenet")])
def test_auto_stem_by_image_size(side, stem):
    from pptrain.model import stem_for

    assert stem_for(side, side) == stem
    assert stem_for(32, side) == stem  # the longer side decides


def test_imagenet_stem_is_torchvisions_and_quarters_the_resolution():
    m = PrivacyResNet(3, 10, 8, adapt="pixel", stem="imagenet").eval()
    assert m.conv1.kernel_size == (7, 7) and m.conv1.stride == (2, 2) and m.conv1.padding == (3, 3)
    assert isinstance(m.maxpool, nn.MaxPool2d) and m.maxpool.kernel_size == 3 and m.maxpool.stride == 2
    seen = {}
    m.layer1.register_forward_hook(lambda mod, i, o: seen.update(layer1=o.shape))  # returns None: output kept
    assert m(torch.zeros(2, 3, 224, 224)).shape == (2, 10)
    assert seen["layer1"] == (2, 8, 56, 56)  # 224 / 4, as torchvision's ResNet-18
    cifar = PrivacyResNet(3, 10, 8, adapt="pixel", stem="cifar")
    assert isinstance(cifar.maxpool, nn.Identity) and cifar.conv1.kernel_size == (3, 3)
    # The stems differ only in conv1's kernel: same state-dict keys, same shapes elsewhere.
    a, b = m.state_dict(), cifar.state_dict()
    assert a.keys() == b.keys() and [k for k in a if a[k].shape != b[k].shape] == ["conv1.weight"]
    with pytest.raises(ValueError, match="unknown stem 'vgg'"):
        PrivacyResNet(3, 10, 8, stem="vgg")
