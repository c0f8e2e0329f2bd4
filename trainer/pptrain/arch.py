"""The backbone behind the adaptation network (``--arch``): the CIFAR ResNet-18 of model.py, or
any classification model of torchvision (``torchvision.models.list_models(module=torchvision.models)``),
always randomly initialised (``weights=None``: nothing is ever downloaded, and weights trained
on plain images would not fit encrypted ones anyway).

A torchvision model is adapted in two places only:

- its first convolution takes the adaptation network's ADAPT_OUT channels (or the dataset's
  own with ``--adapt none``) instead of RGB: the input network's output is matched to the stem;
- ``--stem cifar`` makes that convolution a 3x3 stride-1 one and removes the stem's max-pool
  where the family has one (:data:`STEM_POOLS`), as CIFAR ResNets do: a stem that divides the
  area by 16 (ResNet) or 64 (ViT-style patches) leaves almost nothing of a 32 px image.
  ``--stem imagenet`` keeps torchvision's stem. ``auto`` takes the CIFAR stem up to
  STEM_AUTO_MAX px, torchvision's above, where the model allows both.

Vision transformers with a learned position embedding (vit_*) and MaxViT's grid partition need
the image size when they are built (:data:`BUILD_SIZE`): it is the dataset's, recorded with the
run, so ``eval``/``predict``/``--resume`` rebuild the same model; they keep their patch stem
(``--stem cifar`` is refused: a stride-1 patch would change the token count the model was built
for). Whether a model takes the dataset's images at all is checked by a forward pass on the
meta device (:func:`check_fits`): nothing is allocated, and a model whose pooling would shrink
a small image to nothing (AlexNet, Inception v3 at 64 px) is a one-line option error, not a
crash in the first step.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torchvision
from torch import nn

DEFAULT_ARCH = "cifar-resnet18"  # model.PrivacyResNet: [P]'s network, --width sets its base width
TORCHVISION = tuple(torchvision.models.list_models(module=torchvision.models))
ARCHS = (DEFAULT_ARCH, *TORCHVISION)
STEMS = ("cifar", "imagenet")
STEM_AUTO_MAX = 64  # --stem auto: the CIFAR stem up to this side (pixels), torchvision's above

# Where each family keeps the max-pool that follows its first convolution (name prefix -> module path).
STEM_POOLS = {
    "resnet": "maxpool", "resnext": "maxpool", "wide_resnet": "maxpool", "shufflenet": "maxpool",
    "densenet": "features.pool0", "googlenet": "maxpool1", "inception": "maxpool1",
}  # fmt: skip
# Models whose stem is a patch embedding sized to the image they were built for: no CIFAR stem.
PATCH_ONLY = ("vit_", "maxvit")
# Extra builder arguments by name prefix, from the image's (height, width).
BUILD_SIZE: dict[str, Callable[[int, int], dict]] = {
    "vit_": lambda h, w: {"image_size": h},
    "maxvit": lambda h, w: {"input_size": (h, w)},
    # Auxiliary heads return a tuple in training; the loop wants logits. init_weights: torchvision's
    # own initialisation, stated so it does not warn that its default will change.
    "googlenet": lambda h, w: {"aux_logits": False, "init_weights": True},
    "inception": lambda h, w: {"aux_logits": False, "init_weights": True},
}


class ArchError(ValueError):
    """An architecture, stem or image size that does not go together (train.py: an OptionError)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def _by_prefix(table: dict, arch: str, default=None):
    return next((v for k, v in table.items() if arch.startswith(k)), default)


def stems_of(arch: str) -> tuple[str, ...]:
    """The stems ``arch`` can be built with."""
    return ("imagenet",) if arch.startswith(PATCH_ONLY) else STEMS


def stem_for(height: int, width: int, arch: str = DEFAULT_ARCH) -> str:
    """``--stem auto``: the CIFAR stem keeps full resolution, which small images need and
    larger ones pay for in compute (area); above STEM_AUTO_MAX pixels torchvision's stem, and
    torchvision's wherever the model has no other."""
    if len(stems_of(arch)) == 1:
        return stems_of(arch)[0]
    return "cifar" if max(height, width) <= STEM_AUTO_MAX else "imagenet"


def check_arch(arch: str) -> None:
    if arch not in ARCHS:
        import difflib

        near = difflib.get_close_matches(arch, ARCHS, n=3)
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        raise ArchError("--arch", f"unknown architecture {arch!r}{hint} (`pptrain archs` lists the {len(ARCHS)})")


def check_stem(arch: str, stem: str) -> None:
    if stem not in stems_of(arch):
        raise ArchError("--stem", f"--arch {arch} has a patch-embedding stem built for its image size: --stem {stem} is not "
                                  f"offered for it (use {' or '.join(('auto', *stems_of(arch)))})")  # fmt: skip


@contextlib.contextmanager
def _parameters_on_meta():
    """Inside ``torch.device("meta")``, build on the CPU but register every parameter and buffer
    on the meta device: some builders (RegNet's) compute their widths with tensors and read
    them back, which a meta tensor cannot do."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module, name, tensor, persistent=True):
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        with torch.device("cpu"):
            yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


def torchvision_backbone(arch: str, in_channels: int, num_classes: int, stem: str, height: int, width: int) -> nn.Module:
    """torchvision's ``arch`` (random init) taking ``in_channels`` channels of ``height`` x
    ``width`` images, with stem ``stem``; a builder that refuses the size raises ArchError."""
    check_stem(arch, stem)
    kwargs = _by_prefix(BUILD_SIZE, arch, lambda h, w: {})(height, width)
    if arch.startswith("vit_") and height != width:
        raise ArchError("--arch", f"--arch {arch} needs square images (its position embedding is built for one side), "
                                  f"these are {width}x{height}")  # fmt: skip
    meta = torch.get_default_device().type == "meta"
    try:
        with _parameters_on_meta() if meta else contextlib.nullcontext():
            model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    except (AssertionError, ValueError) as e:  # torchvision checks the size with assert and ValueError
        raise ArchError("--arch", f"--arch {arch} cannot be built for {width}x{height} images ({e})") from None
    parent, name, first = _first_conv(model)
    if stem == "cifar":
        conv = nn.Conv2d(in_channels, first.out_channels, kernel_size=3, stride=1, padding=1, bias=first.bias is not None)
        pool = _by_prefix(STEM_POOLS, arch)
        if pool:
            _replace(model, pool, nn.Identity())
    else:
        conv = nn.Conv2d(in_channels, first.out_channels, kernel_size=first.kernel_size, stride=first.stride,
                         padding=first.padding, dilation=first.dilation, groups=1, bias=first.bias is not None)  # fmt: skip
    if meta:
        conv = conv.to("meta")
    setattr(parent, name, conv)
    return model


def _first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    """The first convolution in registration order (every torchvision classifier's stem), with its parent."""
    path = next(k for k, m in model.named_modules() if isinstance(m, nn.Conv2d))
    *parents, name = path.split(".")
    return model.get_submodule(".".join(parents)), name, model.get_submodule(path)


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    *parents, name = path.split(".")
    setattr(model.get_submodule(".".join(parents)), name, module)


def check_fits(build: Callable[[], nn.Module], arch: str, in_channels: int, height: int, width: int) -> None:
    """A training-mode forward pass of two images on the meta device: raises ArchError when
    ``arch`` shrinks ``height`` x ``width`` images to nothing or otherwise cannot take them."""
    with torch.device("meta"):
        model = build()
        try:
            model.train()(torch.empty(2, in_channels, height, width))
        except (RuntimeError, ValueError, AssertionError, IndexError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ArchError("--arch", f"--arch {arch} cannot take {width}x{height} images ({first}): use larger images "
                                      "(ppencrypt dataset --size) or another --arch") from None  # fmt: skip
