"""The public API (pptrain.api): a user-written model trained in a user-written loop with
EncryptedDataset, EncryptedAugment and input_network; the dataset sharded over ranks and
DataLoader workers; the outputs as documented."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from conftest import encrypt as encrypt_cli
from conftest import tile_real, write_cifar10
from pptrain import ADAPT_OUT, EncryptedAugment, EncryptedDataset, InvariantAdaptation, build, input_network
from pptrain.errors import AugmentError
from trainer_fixtures import session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def cifar_pe(cifar10, tmp_path_factory, session_key) -> Path:
    """103 distinct real-derived CIFAR images (98 train in 13 shards of 8, 5 test), pe with image-scope keys."""
    images, labels = tile_real(*cifar10, 103)
    src = write_cifar10(tmp_path_factory.mktemp("c10") / "src", images, labels)
    out = tmp_path_factory.mktemp("c10-pe") / "out"
    encrypt_cli(src, out, session_key, shard_size=8)
    return out


def samples(loader) -> list[bytes]:
    """Every image the loader yields, as bytes (image-scope keys: every ciphertext differs)."""
    out = []
    for images, _ in loader:
        images = images if images.dim() == 4 else images[None]
        out += [x.numpy().tobytes() for x in images]
    return out


def test_a_user_model_learns_in_a_user_loop(shapes_pe):
    """The README's example, in small: our reader, augmentation and invariant input network in
    front of a model and loop of the user's own, on real Fashion-MNIST images encrypted with pe."""
    torch.manual_seed(0)
    train = EncryptedDataset(str(shapes_pe), "train", batch_size=16, seed=0)
    test = EncryptedDataset(str(shapes_pe), "test", batch_size=64)
    augment = EncryptedAugment.for_dataset(train)
    assert augment.names == ("crop", "flip")
    model = nn.Sequential(
        input_network(train),  # pe: the key-invariant network, ADAPT_OUT channels out
        nn.Conv2d(ADAPT_OUT, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, len(train.classes)),
    )  # fmt: skip
    assert isinstance(model[0], InvariantAdaptation)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / (12 * len(train)))  # to 0
    loader = DataLoader(train, batch_size=None, num_workers=2)
    losses = []
    for epoch in range(12):
        train.set_epoch(epoch)
        model.train(), augment.train(epoch < 9)  # the last epochs unaugmented, as pptrain's fast recipe does
        for images, labels in loader:
            assert images.dtype == torch.uint8 and images.shape == (16, 28, 28, 1)
            x, y = augment(images, labels)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    assert len(losses) == 12 * len(train) == 12 * (train.count // 16)
    assert np.mean(losses[-7:]) < 0.5 * np.mean(losses[:7])
    model.eval(), augment.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in DataLoader(test, batch_size=None):
            correct += (model(augment(images)).argmax(1) == labels).sum().item()
            total += len(labels)
    assert total == test.count == 19
    # Chance is 1/3 and the largest class 10/19 (a 10-point margin above it: 19 test images are noisy).
    assert correct / total >= 12 / 19


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("batch_size", [None, 5])
def test_ranks_and_workers_read_disjoint_equal_shares(cifar_pe, workers, batch_size):
    """Training: each of 3 ranks yields len() items, whatever the worker count, from shares no
    other rank reads; evaluation: every sample exactly once across the ranks."""
    epoch = {}
    for rank in range(3):
        ds = EncryptedDataset(str(cifar_pe), "train", batch_size=batch_size, rank=rank, world=3, buffer=16)
        ds.set_epoch(1)
        got = list(DataLoader(ds, batch_size=None, num_workers=workers))
        assert len(got) == len(ds) == 98 // 3 // (batch_size or 1)
        epoch[rank] = samples(got)
    # Disjoint between ranks. Within a rank a sample repeats only when the shards that rank reads
    # hold fewer than its quota (13 shards of 8, the last of 2, over 3 ranks): as pptrain's streaming loader.
    shares = [set(part) for part in epoch.values()]
    assert sum(len(s) for s in shares) == len(set().union(*shares)) >= 80
    whole = EncryptedDataset(str(cifar_pe), "test", batch_size=batch_size)
    plain = Counter(samples(DataLoader(whole, batch_size=None)))
    assert sum(plain.values()) == 5
    split = Counter(s for rank in range(3)
                    for s in samples(DataLoader(EncryptedDataset(str(cifar_pe), "test", batch_size=batch_size, rank=rank, world=3),
                                                batch_size=None, num_workers=workers)))  # fmt: skip
    assert split == plain


def test_epochs_are_seeded_and_differ(cifar_pe):
    ds = EncryptedDataset(str(cifar_pe), "train", batch_size=7, seed=3, buffer=16)
    first = samples(ds)
    assert samples(ds) == first  # the same epoch again: the same order
    ds.set_epoch(1)
    assert samples(ds) != first


def test_outputs_uint8_or_normalised(cifar_pe):
    raw = EncryptedDataset(str(cifar_pe), "test")
    flt = EncryptedDataset(str(cifar_pe), "test", output="float")
    (x, y), (f, g) = next(iter(raw)), next(iter(flt))
    assert x.dtype == torch.uint8 and x.shape == (32, 32, 3) and y.dtype == torch.int64 and y == g
    assert f.dtype == torch.float32 and f.shape == (3, 32, 32)
    assert torch.equal(f, (x.permute(2, 0, 1).float() - 127.5) / 127.5)
    assert len(raw) == 5
    with pytest.raises(ValueError, match="output must be one of uint8, float"):
        EncryptedDataset(str(cifar_pe), "test", output="fp16")


def test_the_augmentation_module_refuses_what_does_not_commute(cifar_pe):
    data = EncryptedDataset(str(cifar_pe), "train", batch_size=8)
    images, labels = next(iter(data))
    with pytest.raises(AugmentError, match="'resize' does not commute with pixel-wise encryption"):
        EncryptedAugment(("crop", "resize"))(images, labels)
    with pytest.raises(AugmentError, match="'mixup' needs one key for the whole dataset"):
        EncryptedAugment.for_dataset(data, ("mixup",))(images, labels)  # image-scope keys
    aug = EncryptedAugment.for_dataset(data, ("cutmix", "flip"), seed=1)
    x, target = aug(images, labels)
    assert x.shape == (8, 3, 32, 32) and target.shape == (8, 10) and torch.allclose(target.sum(1), torch.ones(8))
    # Moved pixels only: every augmented pixel is a pixel of the batch (or the 127.5 border, 0).
    values = set(((images.float() - 127.5) / 127.5).flatten().tolist()) | {0.0}
    assert set(x.flatten().tolist()) <= values
    assert torch.equal(aug.eval()(images), (images.permute(0, 3, 1, 2).float() - 127.5) / 127.5)


def test_build_is_the_network_pptrain_trains(cifar_pe):
    data = EncryptedDataset(str(cifar_pe), "test", batch_size=5, output="float")
    net = build(data, "mobilenet_v3_small")
    assert isinstance(net.adapt, InvariantAdaptation) and net.backbone.features[0][0].in_channels == ADAPT_OUT
    assert net.backbone.features[0][0].stride == (1, 1)  # 32 px: the CIFAR stem
    x, _ = next(iter(data))
    assert net.eval()(x).shape == (5, 10)


def test_the_readmes_example_runs(shapes_pe, capsys):
    """README.md's Python example, as printed there, on the three-shapes dataset: only its data
    path and its batch size (the split has 114 images) are changed."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'DATA, EPOCHS = "out/fm", 2' in block and "batch_size=128" in block
    code = block.replace('"out/fm"', repr(str(shapes_pe))).replace("batch_size=128", "batch_size=16")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2"]
    assert all("test accuracy" in line and line.endswith("%") for line in lines)
