"""What the trainer benchmarks share: an encrypted Fashion-MNIST dataset to read, the input
pipeline a user would write without pptrain (the baseline every ratio is against), and
pptrain's training step on random device-resident batches of any image size."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import webdataset as wds
from torchvision.transforms import v2

from common import FMNIST, ROOT
from ppencrypt.dataset import EncryptOptions, encrypt_dataset
from ppencrypt.formats import open_dataset
from ppencrypt.keys import MasterKey

BASELINE = "webdataset + torchvision v2 per-sample RandomCrop(padding=4) + RandomHorizontalFlip + DataLoader(2 workers), batch 128"


def encrypted_fmnist(storage: str = "wds") -> Path:
    """out/bench-fm-<storage>: Fashion-MNIST under pe with a throwaway dataset-scope key,
    made once and reused (no key is kept: benchmarks never decrypt)."""
    out = ROOT / "out" / f"bench-fm-{storage}"
    if not (out / "manifest.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        encrypt_dataset(str(FMNIST), str(out), MasterKey(bytes(32)), EncryptOptions(storage=storage, scope="dataset"), overwrite=True)
    return out


def baseline_loader(root: Path, split: str = "train", batch: int = 128, workers: int = 2) -> torch.utils.data.DataLoader:
    """Per-sample decode and augmentation in DataLoader workers, the stock way."""
    h, w, _ = open_dataset(root).manifest.shape
    augment = v2.Compose([v2.RandomCrop((h, w), padding=4), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)])
    urls = open_dataset(root).split(split).shard_paths()
    ds = (
        wds.WebDataset(urls, shardshuffle=False, workersplitter=wds.split_by_worker, empty_check=False)
        .decode()
        .to_tuple("npy", "cls")
        .map_tuple(lambda a: augment(torch.from_numpy(a).permute(2, 0, 1)), int)
    )
    return torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers)


class DeviceBatches:
    """Random batches of a device-resident uint8 pool: the in-memory loader without a dataset
    (pixel values do not change the speed of a dense network)."""

    def __init__(self, device: torch.device, shape: tuple[int, int, int], classes: int, batch: int, batches: int, pool: int):
        g = torch.Generator(device="cpu").manual_seed(0)
        self.x = torch.randint(0, 256, (pool, *shape), dtype=torch.uint8, generator=g).to(device)
        self.y = torch.randint(0, classes, (pool,), generator=g).to(device)
        self.batch, self.batches, self.images = batch, batches, batch * batches

    def epoch(self, epoch: int):
        for _ in range(self.batches):
            idx = torch.randint(0, len(self.y), (self.batch,), device=self.x.device)
            yield self.x[idx], self.y[idx], idx


def train_throughput(device: torch.device, shape: tuple[int, int, int], width: int, batch: int, steps: int, warmup: int,
                     stem: str = "auto", compiled: bool = False, classes: int = 10, pool: int = 50_000,
                     arch: str = "cifar-resnet18") -> dict:  # fmt: skip
    """pptrain's training step (pptrain.loop.train_epoch: batched crop + flip on the device, the
    fast recipe's SGD, bf16 and channels_last on CUDA) on images of ``shape``, for backbone
    ``arch`` behind [P]'s adaptation network (``width``: cifar-resnet18's): images/s over
    ``steps`` steps after ``warmup``, timed with CUDA events on a GPU."""
    from pptrain.augment import BatchAugment
    from pptrain.device import memory_format
    from pptrain.distributed import Dist
    from pptrain.loop import Loop, train_epoch
    from pptrain.model import ModelSpec, build_model, stem_for
    from pptrain.recipe import RECIPES

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True  # as pptrain sets it on CUDA
    stem = stem_for(*shape[:2], arch) if stem == "auto" else stem
    spec = ModelSpec(arch=arch, in_channels=shape[2], num_classes=classes, width=width, adapt="pixel", stem=stem, height=shape[0],
                     image_width=shape[1])  # fmt: skip
    model = build_model(spec).to(device, memory_format=memory_format(device))
    net = torch.compile(model) if compiled else model
    recipe = RECIPES["fast"]
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    aug = BatchAugment(("crop", "flip"), shape, classes, pad=4)
    data = lambda n: DeviceBatches(device, shape, classes, batch, n, pool)  # noqa: E731
    loop = lambda n: Loop(net=net, optimizer=opt, aug=aug, recipe=recipe, lr=recipe.lr, total_steps=n, seed=0, epochs=1,  # noqa: E731
                          device=device, d=Dist())  # fmt: skip
    step = lambda n: train_epoch(loop(n), data(n), 0)  # noqa: E731
    step(warmup)  # compilation, cuDNN autotuning, allocator growth
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
    t = time.perf_counter()
    step(steps)
    if cuda:
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        seconds = time.perf_counter() - t
    result = {"bench": "train_throughput", "arch": arch, "parameters": sum(p.numel() for p in model.parameters()),
              "compiled": compiled, "width": width, "batch": batch, "shape": list(shape),
              "stem": stem, "steps": steps, "images_per_s": steps * batch / seconds}  # fmt: skip
    if cuda:
        result["max_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result
