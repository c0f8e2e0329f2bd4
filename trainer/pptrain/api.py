"""The public API: pptrain's reader, augmentation and input networks for a training loop of your own.

    from pptrain import EncryptedDataset, EncryptedAugment, input_network, build

    data = EncryptedDataset("out/fm", "train", batch_size=128)        # a folder or a URL
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=2)
    augment = EncryptedAugment.for_dataset(data)                      # crop + flip of the ciphertext
    model = torch.nn.Sequential(input_network(data), my_model_taking(ADAPT_OUT))  # or build(data, "resnet50")
    for epoch in range(epochs):
        data.set_epoch(epoch)
        for images, labels in loader:                                # uint8 N x H x W x C, int64 N
            x, y = augment(images, labels)                            # float N x C x H x W in [-1, 1]
            loss = F.cross_entropy(model(x), y)
            ...

Everything here is the trainer's own code, not a copy: :class:`EncryptedDataset` runs the
streaming loader's reader pipeline (stages.py: shard order, read-ahead, SHA-256 checks, the
shuffle pool, all seeded by (seed, epoch) as seeding.py says) in each DataLoader worker;
:class:`EncryptedAugment` is augment.BatchAugment; the input networks are model.py's.

Sharding: rank r of W (``torch.distributed`` when it is initialised, else ``rank``/``world``)
and DataLoader worker w of N read reader ``r x N + w`` of ``W x N``'s share, disjoint from
every other. In training (``shuffle``) every rank yields exactly ``len(dataset)`` items per
epoch — ``count // W`` samples, in batches when ``batch_size`` is given — whatever N, so DDP's
all-reduce never waits; a reader short of its quota starts another pass over its own share.
In evaluation (no shuffle) every sample is yielded once, on one rank.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import webdataset as wds
from torch import nn

from ppencrypt.formats import Dataset, ShardCache, open_dataset

from .arch import DEFAULT_ARCH, stem_for
from .augment import BatchAugment, normalise, parse_augment
from .data import MIB
from .model import ADAPT_OUT, TANAKA_BLOCK, AdaptationNetwork, InvariantAdaptation, ModelSpec, TanakaAdaptation, build_model, make_adaptation
from .settings import DEFAULT_AUGMENT, Settings
from .stages import PASS_END, Failure, ReadPlan, reader_items

__all__ = ["ADAPT_OUT", "AdaptationNetwork", "EncryptedAugment", "EncryptedDataset", "InvariantAdaptation", "TanakaAdaptation", "build",
           "input_network"]  # fmt: skip

OUTPUTS = ("uint8", "float")


class EncryptedDataset(torch.utils.data.IterableDataset):
    """Split ``split`` of the encrypted dataset at ``data`` (a folder, or an ``s3://``,
    ``gs://`` or ``https://`` URL, each file checked against its SHA-256 as it arrives; with
    ``cache_dir`` the downloaded files are kept there, at most ``cache_limit`` MiB).

    Yields ``(image, label)``: a uint8 H x W x C tensor of ciphertext (``output="uint8"``, for
    :class:`EncryptedAugment`) or a float C x H x W one in [-1, 1] (``output="float"``) and an
    int64 label; with ``batch_size``, ``(images, labels)`` batches of that many (use
    ``DataLoader(dataset, batch_size=None)``: no per-sample collation).

    ``shuffle`` (default: for the ``train`` split) mixes samples across shards in a pool of
    ``buffer`` samples, in an order fixed by ``seed`` and the epoch (:meth:`set_epoch`).
    """

    def __init__(self, data: str, split: str = "train", *, batch_size: int | None = None, shuffle: bool | None = None, seed: int = 0,
                 output: str = "uint8", buffer: int = 10_000, prefetch: int = 2, cache_dir: str | None = None,
                 cache_limit: int = 10_240, rank: int | None = None, world: int | None = None):  # fmt: skip
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.ds: Dataset = open_dataset(data, cache=ShardCache(cache_dir, cache_limit * MIB) if cache_dir else None)
        self.ds.split(split)  # a missing split is an error naming the ones there are
        self.split, self.batch_size, self.seed, self.output = split, batch_size, seed, output
        self.shuffle = split == "train" if shuffle is None else shuffle
        self.buffer, self.prefetch, self._rank, self._world = buffer, prefetch, rank, world
        self.epoch = 0

    @property
    def manifest(self):
        return self.ds.manifest

    @property
    def classes(self) -> list[str]:
        return list(self.ds.manifest.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """H, W, C of every image."""
        return tuple(self.ds.manifest.shape)

    @property
    def count(self) -> int:
        """Samples in the split."""
        return self.ds.manifest.splits[self.split].count

    def set_epoch(self, epoch: int) -> None:
        """The epoch (from 0) the next iteration reads: the shard and sample order derive from it."""
        self.epoch = epoch

    def ranks(self) -> tuple[int, int]:
        """(rank, world): as given, else torch.distributed's when it is initialised, else (0, 1)."""
        if self._world is not None:
            return self._rank or 0, self._world
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        """Items (samples, or batches with ``batch_size``) this rank yields per epoch: known in
        training; in evaluation, for one process yielding samples."""
        rank, world = self.ranks()
        if self.shuffle:
            return self.count // world // (self.batch_size or 1)
        if world == 1 and self.batch_size is None:
            return self.count
        raise TypeError("len() of an unshuffled EncryptedDataset is known for one process yielding samples only")

    def plan(self, worker: int, workers: int) -> ReadPlan:
        rank, world = self.ranks()
        info = self.ds.manifest.splits[self.split]
        return ReadPlan(ds=self.ds, split=self.split, shards=tuple(info.shards), batch=self.batch_size or 1, seed=self.seed,
                        epoch=self.epoch, train=self.shuffle, buffer=self.buffer, reader=rank * workers + worker,
                        readers=world * workers, prefetch=self.prefetch)  # fmt: skip

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        plan = self.plan(worker, workers)
        unit_size = self.batch_size or 1
        quota = None  # units this worker yields: a share of the rank's, the same total for any worker count
        if self.shuffle:
            units = len(self)
            quota = units // workers + (worker < units % workers)
            if quota == 0:
                return
        made, left = 0, None  # left: the samples of the last pool output short of a unit
        for item in reader_items(plan, wds.reraise_exception):
            if item is PASS_END:
                continue  # a training reader cycles over its share until its quota is met
            if isinstance(item, Failure):
                raise item.error
            images, labels = item.images, item.labels
            if left is not None:
                images, labels = np.concatenate([left[0], images]), np.concatenate([left[1], labels])
            whole = len(labels) // unit_size * unit_size
            for at in range(0, whole, unit_size):
                if quota is not None and made >= quota:
                    return
                made += 1
                yield self._out(images[at : at + unit_size], labels[at : at + unit_size])
            left = (images[whole:], labels[whole:]) if whole < len(labels) else None
            if quota is not None and made >= quota:
                return
        if left is not None and quota is None:  # evaluation: the reader's last, shorter batch
            yield self._out(*left)

    def _out(self, images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch as tensors (writable memory, which torch needs), or its one sample."""
        x = torch.from_numpy(np.require(images, requirements=["C", "W"]))
        y = torch.from_numpy(np.require(labels, np.int64, requirements=["C", "W"]))
        if self.output == "float":
            x = normalise(x).contiguous()
        return (x, y) if self.batch_size else (x[0], y[0])


class EncryptedAugment(nn.Module):
    """The trainer's augmentation of ciphertext, batched, on the batch's device: ``names``
    from ``crop``, ``flip``, ``vflip``, ``rot90``, ``mixup``, ``cutmix`` (``crop`` shifts by up to
    ``pad`` pixels with a 127.5 border, which every key encrypts to itself). Anything that does
    not commute with pixel-wise encryption (resize, blur, colour jitter, ...) is refused with
    the reason. ``key_scope="image"`` refuses ``mixup``.

    ``forward(images, labels)``: uint8 N x H x W x C ciphertext (as :class:`EncryptedDataset`
    yields it) -> (float N x C x H x W in [-1, 1], targets); targets are class-probability rows
    when the batch is mixed (``num_classes`` needed), else the labels. In ``eval()`` mode the
    images are only normalised. The draws come from a generator seeded with ``seed``.
    """

    def __init__(self, names=DEFAULT_AUGMENT, *, num_classes: int | None = None, pad: int = 4, mix_alpha: float = 1.0, seed: int = 0,
                 key_scope: str | None = None):  # fmt: skip
        super().__init__()
        self.names, self.num_classes, self.pad, self.mix_alpha, self.key_scope = tuple(names), num_classes, pad, mix_alpha, key_scope
        self.rng = np.random.default_rng(seed)
        self._aug: dict[tuple, BatchAugment] = {}

    @classmethod
    def for_dataset(cls, data: EncryptedDataset, names=None, **kwargs) -> EncryptedAugment:
        """The dataset's augmentation: ``names`` or pptrain's default (crop + flip; none for a
        dataset the client augmented with ``ppencrypt dataset --copies``), its class count and key scope."""
        m = data.manifest
        if names is None:
            names = () if m.augment is not None else DEFAULT_AUGMENT
        scope = m.cipher.key_scope if m.cipher.key_id is not None else None
        return cls(names, num_classes=len(m.classes), key_scope=scope, **kwargs)

    def augmentation(self, shape: tuple[int, int, int]) -> BatchAugment:
        if shape not in self._aug:
            names = parse_augment(self.names, shape, self.key_scope)
            if {"mixup", "cutmix"} & set(names) and self.num_classes is None:
                raise ValueError("mixup and cutmix make class-probability targets: give num_classes")
            self._aug[shape] = BatchAugment(names, shape, self.num_classes or 0, self.pad, self.mix_alpha)
        return self._aug[shape]

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"EncryptedAugment takes uint8 N x H x W x C ciphertext, not {images.dtype} of shape {tuple(images.shape)}")
        if not self.training:
            x = normalise(images)
            return x if labels is None else (x, labels)
        aug = self.augmentation(tuple(images.shape[1:]))
        y = labels if labels is not None else torch.zeros(len(images), dtype=torch.int64, device=images.device)
        x, target = aug(images, y.to(images.device), aug.draw(len(images), self.rng))
        return x if labels is None else (x, target)


def input_network(data: EncryptedDataset | Dataset, adapt: str | None = None) -> nn.Module:
    """The adaptation network pptrain puts in front of its backbone for this dataset: ``adapt``
    (``pixel``, ``invariant``, ``tanaka``, ``none``) or the dataset's default (the key-invariant
    network for ``pe``/``np``, Tanaka's for block ciphers, [P]'s ``pixel`` otherwise). It takes
    normalised N x C x H x W ciphertext and hands on ADAPT_OUT (32) channels at H x W
    (``none``: the input as it is): the first layer of the model behind it takes that many."""
    from .train import adaptation  # the trainer's own choice, so the API and pptrain agree

    ds = data.ds if isinstance(data, EncryptedDataset) else data
    name, block, group = adaptation(Settings(adapt=adapt), ds)
    return make_adaptation(name, ds.manifest.channels, block or TANAKA_BLOCK, group)


def build(data: EncryptedDataset | Dataset, arch: str = DEFAULT_ARCH, *, stem: str = "auto", adapt: str | None = None,
          width: int = 64) -> nn.Module:  # fmt: skip
    """The whole network ``pptrain --arch ARCH --stem STEM`` trains on this dataset: its input
    network (:func:`input_network`) in front of ``arch`` (cifar-resnet18 at base ``width``, or a
    torchvision classifier, randomly initialised), the first convolution matched to it."""
    from .train import adaptation

    ds = data.ds if isinstance(data, EncryptedDataset) else data
    m = ds.manifest
    name, block, group = adaptation(Settings(adapt=adapt), ds)
    spec = ModelSpec(arch=arch, in_channels=m.channels, num_classes=len(m.classes), width=width, adapt=name, block=block or TANAKA_BLOCK, group=group,
                     stem=stem_for(m.height, m.width, arch) if stem == "auto" else stem, height=m.height, image_width=m.width)  # fmt: skip
    return build_model(spec)
