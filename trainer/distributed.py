"""Where this process sits in a ``torchrun`` job, and the few collectives training needs.

Single-process runs take the same code path with ``world == 1``: every collective is then a
no-op, so there is one training loop, not two.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import OptionError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone writes metrics, checkpoints and the summary."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.active:
            values = values.clone()
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


def from_env() -> Dist:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(d: Dist, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if d.active and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=d.rank, world_size=d.world)


def pick_device(name: str, d: Dist) -> torch.device:
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
