"""The data owner's inverse: an encrypted dataset back to PNG files, with the right key."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .atomic import atomic_dir, is_within
from .errors import OutputError
from .formats.wds import sample_key
from .keys import MasterKey, open_keyed
from .pictures import refuse_plain_inside, to_pil
from .progress import ProgressFactory, no_progress


MARKER = ".ppencrypt-decrypted"  # lets --overwrite recognise a folder this command wrote
MARKER_TEXT = "decrypted from a ppencrypt dataset"


def is_decrypted(root: Path) -> bool:
    try:
        return (root / MARKER).read_text(encoding="utf-8").startswith(MARKER_TEXT)
    except (OSError, UnicodeDecodeError):
        return False


def safe_folder_name(name: str) -> str:
    """A class name as one path component ('T-shirt/top' -> 'T-shirt_top')."""
    cleaned = re.sub(r"[/\\\x00-\x1f\x7f]", "_", name).strip()
    return cleaned if cleaned not in ("", ".", "..") else f"_{cleaned}_"


def class_folders(classes: list[str]) -> list[str]:
    """One distinct folder name per class: names that clean to the same folder ('a/b' and
    'a_b') get their class index appended, so no class writes into another's folder."""
    names = [safe_folder_name(c) for c in classes]
    seen: dict[str, int] = {}
    for n in names:
        seen[n.lower()] = seen.get(n.lower(), 0) + 1  # case-insensitive file systems too
    return [f"{n}_{i}" if seen[n.lower()] > 1 else n for i, n in enumerate(names)]


def target(dest: Path, *parts: str) -> Path:
    """``dest / parts``, refusing anything that would resolve outside ``dest``."""
    path = dest.joinpath(*parts)
    if not is_within(path, dest):
        raise OutputError(f"{path}: would be written outside {dest}; refusing")
    return path


def decrypt_dataset(
    root: str | os.PathLike, dest: str | os.PathLike, key: MasterKey | None, overwrite: bool = False,
    progress: ProgressFactory = no_progress, dataset_id: str | None = None,
) -> tuple[int, list[str]]:  # fmt: skip
    """Writes DEST/<split>/<class>/<sample key>.png; returns the count and warnings."""
    keyed = open_keyed(root, key, dataset_id=dataset_id)  # before anything is written
    ds, m, cipher = keyed.dataset, keyed.manifest, keyed.cipher
    refuse_plain_inside(dest, ds.loc)
    folders = class_folders(m.classes)
    written = 0
    with atomic_dir(dest, overwrite, is_decrypted, "a folder ppencrypt decrypt wrote") as tmp:
        (Path(tmp) / MARKER).write_text(f"{MARKER_TEXT} by {m.tool}\n")
        for split in ds.splits:
            ring = keyed.ring(split)
            for i, folder in enumerate(folders):
                if m.splits[split].per_class[i]:
                    target(Path(tmp), split, folder).mkdir(parents=True, exist_ok=True)
            with progress(m.splits[split].count, f"decrypt {split}") as bar:
                for batch in ds.split(split).chunks():
                    plain = cipher.decrypt(batch.images, ring, batch.indices)
                    for image, label, index in zip(plain, batch.labels, batch.indices):
                        to_pil(image).save(target(Path(tmp), split, folders[label], f"{sample_key(int(index))}.png"))
                    written += len(batch)
                    bar.update(len(batch))
    return written, keyed.warnings
