"""The training device: which one, getting tensors onto it, and the memory format it wants."""

from __future__ import annotations

import torch

from .distributed import Dist
from .errors import OptionError


def pick_device(name: str, d: Dist) -> torch.device:
    """``--device``: auto (CUDA when present, else CPU), cpu, cuda, cuda:N; under torchrun a
    bare ``cuda`` is this process's GPU (LOCAL_RANK)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError("--device", "CUDA was asked for, but torch sees no GPU")
        if device.index is None:
            device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    return device


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device`` without making the host wait for the GPU."""
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on the GPU (tensor cores want NHWC). On the CPU, torch 2.14.1's
    channels-last backward of a 1x1 stride-2 convolution with few channels (the downsample
    of a narrow ResNet) corrupts the heap, so the CPU stays NCHW."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def model_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch in the model's memory format. On the CPU the strides must be NCHW's own:
    ``contiguous()`` leaves a one-channel N x 1 x H x W view of NHWC memory as it is (size-1
    dimensions count as contiguous), and oneDNN then takes it for channels-last, which hits
    the bug above."""
    if device.type == "cuda":
        return x.contiguous(memory_format=torch.channels_last)
    canonical = torch.empty(0).new_empty(x.shape).stride() if x.dim() else ()
    return x if x.stride() == canonical else x.clone(memory_format=torch.contiguous_format)
