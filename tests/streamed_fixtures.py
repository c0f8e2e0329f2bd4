"""Streamed sources built from the vendored real images: webdataset shards written by
webdataset's own TarWriter, parquet files written by pyarrow as Hugging Face ``datasets``
writes them (the image a struct of bytes and path, the label a ClassLabel named in the schema's
``huggingface`` metadata), and the ImageFolder that holds the same images, in the same order."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import CIFAR10_NAMES

SPLITS = {"test": 5, "train": 15}  # the fixtures' split sizes, in the order the images are taken


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, fmt)
    return buf.getvalue()


def in_folder_order(images, labels, names=CIFAR10_NAMES) -> dict[str, list[tuple[str, np.ndarray, int]]]:
    """{split: [(file name, image, label)]} in the order an ImageFolder of them is read: by class
    name, then file name (write_imagefolder's img_NN.png)."""
    out, at = {}, 0
    for split, n in SPLITS.items():
        rows = [(f"img_{i:02d}", images[i], int(labels[i])) for i in range(at, at + n)]
        out[split] = sorted(rows, key=lambda r: (names[r[2]], r[0]))
        at += n
    return out


def write_folder(root: Path, images, labels, names=CIFAR10_NAMES) -> Path:
    for split, rows in in_folder_order(images, labels, names).items():
        for stem, image, label in rows:
            (root / split / names[label]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / split / names[label] / f"{stem}.png")
    return root


def write_wds(root: Path, images, labels, per_shard: int = 4, label: str = "cls", classes: bool = True, ext: str = "png",
              names=CIFAR10_NAMES) -> Path:  # fmt: skip
    """root/<split>/shard-NNNN.tar (webdataset.TarWriter), root/classes.txt."""
    import webdataset

    for split, rows in in_folder_order(images, labels, names).items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for s in range(0, len(rows), per_shard):
            with webdataset.TarWriter(str(root / split / f"shard-{s // per_shard:04d}.tar")) as w:
                for stem, image, y in rows[s : s + per_shard]:
                    sample = {"__key__": f"{split}/{stem}", ext: encode(image, "JPEG" if ext == "jpg" else "PNG")}
                    if label == "cls":
                        sample["cls"] = str(y).encode()
                    elif label == "json":
                        sample["json"] = json.dumps({"label": y}).encode()
                    elif label == "txt":
                        sample["txt"] = names[y].encode()
                    w.write(sample)
    if classes:
        (root / "classes.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def write_parquet(root: Path, images, labels, rows_per_group: int = 6, hf: bool = True, names=CIFAR10_NAMES) -> Path:
    """root/data/<split>-00000-of-00001.parquet as Hugging Face writes an image dataset."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "data").mkdir(parents=True, exist_ok=True)
    features = {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": list(names)}}
    for split, rows in in_folder_order(images, labels, names).items():
        if hf:
            table = pa.table({"image": [{"bytes": encode(im), "path": f"{stem}.png"} for stem, im, _ in rows],
                              "label": pa.array([y for _, _, y in rows], pa.int64())})  # fmt: skip
            table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
        else:  # plain binary images, string labels
            table = pa.table({"png": pa.array([encode(im) for _, im, _ in rows], pa.binary()),
                              "class": [names[y] for _, _, y in rows]})  # fmt: skip
        pq.write_table(table, root / "data" / f"{split}-00000-of-00001.parquet", row_group_size=rows_per_group)
    return root


def expected(images, labels, names=CIFAR10_NAMES) -> dict[str, np.ndarray]:
    """What ``ppencrypt decrypt`` writes for these splits: DEST/<split>/<class>/<index>.png."""
    return {f"{split}/{names[y]}/{i:08d}.png": im for split, rows in in_folder_order(images, labels, names).items()
            for i, (_, im, y) in enumerate(rows)}  # fmt: skip
