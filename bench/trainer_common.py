"""What the trainer benchmarks share: an encrypted Fashion-MNIST dataset to read, and the
input pipeline a user would write without pptrain (the baseline every ratio is against)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import webdataset as wds
from torchvision.transforms import v2

from common import FMNIST, ROOT
from pipeline.encrypt import EncryptOptions, encrypt_dataset
from pipeline.formats import open_dataset
from pipeline.keys import MasterKey

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


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="pptrain-bench-"))
