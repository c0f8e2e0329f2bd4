"""The data owner's inverse: an encrypted dataset back to PNG files, with the right key."""

from __future__ import annotations

import os
import re
from pathlib import Path

from PIL import Image

from .atomic import atomic_dir, is_within
from .ciphers import ImageCipher, make_cipher
from .encrypt import key_ring
from .errors import KeyFileError, OutputError
from .formats import Manifest, open_dataset
from .formats.wds import sample_key
from .keys import MasterKey
from .progress import ProgressFactory, no_progress


def cipher_for(manifest: Manifest, key: MasterKey | None, key_name: str = "the key") -> ImageCipher:
    """The dataset's cipher, after checking that ``key`` is the one it was made with."""
    cipher = make_cipher(manifest.cipher.method, manifest.cipher.params)
    if not cipher.needs_key:
        return cipher
    if key is None:
        raise KeyFileError(f"this dataset is encrypted ({manifest.cipher.method}): pass --key")
    if key.key_id != manifest.cipher.key_id:
        raise KeyFileError(f"{key_name}: key id {key.key_id} is not the dataset's ({manifest.cipher.key_id}); wrong key")
    return cipher


MARKER = ".ppencrypt-decrypted"  # lets --overwrite recognise a folder this command wrote


def refuse_plain_inside(path: str | os.PathLike, root: str | os.PathLike) -> None:
    """Decrypted pixels must never land in the folder that goes to the untrusted server."""
    if is_within(path, root):
        raise OutputError(f"{path}: inside the encrypted dataset {root}; write decrypted images elsewhere")


def safe_folder_name(name: str) -> str:
    """A class name as one path component ('T-shirt/top' -> 'T-shirt_top')."""
    cleaned = re.sub(r"[/\\\x00-\x1f]", "_", name).strip()
    return cleaned if cleaned not in ("", ".", "..") else f"_{cleaned}_"


def to_pil(image) -> Image.Image:
    return Image.fromarray(image[..., 0], "L") if image.shape[-1] == 1 else Image.fromarray(image, "RGB")


def decrypt_dataset(
    root: str | os.PathLike, dest: str | os.PathLike, key: MasterKey | None, key_name: str = "the key",
    overwrite: bool = False, progress: ProgressFactory = no_progress,
) -> int:  # fmt: skip
    ds = open_dataset(root)
    m = ds.manifest
    cipher = cipher_for(m, key, key_name)  # before anything is written
    refuse_plain_inside(dest, root)
    folders = [safe_folder_name(c) for c in m.classes]
    written = 0
    with atomic_dir(dest, overwrite, MARKER) as tmp:
        (Path(tmp) / MARKER).write_text(f"decrypted from a ppencrypt dataset by {m.tool}\n")
        for split in ds.splits:
            ring = key_ring(cipher, key, m.cipher.key_scope, split)
            for i, folder in enumerate(folders):
                if m.splits[split].per_class[i]:
                    (Path(tmp) / split / folder).mkdir(parents=True, exist_ok=True)
            with progress(m.splits[split].count, f"decrypt {split}") as bar:
                for batch in ds.split(split).chunks():
                    plain = cipher.decrypt(batch.images, ring, batch.indices)
                    for image, label, index in zip(plain, batch.labels, batch.indices):
                        to_pil(image).save(Path(tmp) / split / folders[label] / f"{sample_key(int(index))}.png")
                    written += len(batch)
                    bar.update(len(batch))
    return written
