"""``ppencrypt preview``: a picture of encrypted samples, with their decryptions beside them
when the key is given, each column headed by what it shows and each sample captioned with its
class. With ``--attack``, each sample also beside the learned attack's reconstruction of it
(audit/shown.py): plain (with the key) | encrypted | learned attack.

    +-----------+-----------+-----------+-----------+
    | encrypted | decrypted | encrypted | decrypted |   <- HEADER: one header per column
    |  [tile]   |  [tile]   |  [tile]   |  [tile]   |
    | airplane              | frog                  |   <- CAPTION: the class of each sample
    ...

:func:`layout` places everything (pure geometry and text, so a test reads back what is drawn);
:func:`compose` draws it with Pillow's default font (no download).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_writer
from .audit.shown import ShownAttack, reconstruct
from .formats import open_dataset
from .keys import MasterKey, open_keyed
from .pictures import GAP, MIN_TILE, refuse_plain_inside, to_pil
from .progress import ProgressFactory, no_progress

HEADER = 14  # pixels of the strip above the columns, for their headers
CAPTION = 16  # pixels of the strip under each row of tiles, for the samples' classes
PAD = 2  # pixels between a strip's edge and its text
# What the columns of one sample show, by (whether the key was given, whether --attack): one
# sample's tiles side by side.
COLUMNS = {
    (False, False): ("encrypted",),
    (True, False): ("encrypted", "decrypted"),
    (False, True): ("encrypted", "learned attack"),
    (True, True): ("plain", "encrypted", "learned attack"),
}


@dataclass(frozen=True, kw_only=True)
class Label:
    text: str  # as drawn: shortened with "..." to fit its strip
    box: tuple[int, int, int, int]  # left, top, right, bottom of the strip it is written in


@dataclass(frozen=True, kw_only=True)
class Layout:
    size: tuple[int, int]  # width, height of the picture
    tiles: list[tuple[int, int]]  # left, top of each tile: sample 0's columns, then sample 1's, ...
    headers: list[Label]  # one per column of tiles
    captions: list[Label]  # one per sample: its class name


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()  # FreeType's bundled font where Pillow has FreeType, else a bitmap font


def _drawable(text: str, font) -> str:
    """A bitmap font has Latin-1 glyphs only; FreeType draws any character (a box where it has none)."""
    return text if isinstance(font, ImageFont.FreeTypeFont) else text.encode("latin-1", "replace").decode("latin-1")


def fit(text: str, width: int, font) -> str:
    """``text``, or as much of it as fits ``width`` pixels followed by "..."."""
    text = _drawable(text, font)
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def layout(names: list[str], keyed: bool, tile: tuple[int, int], font=None, attack: bool = False) -> Layout:
    """Where the tiles, headers and captions of a preview of samples of classes ``names`` go:
    samples in reading order, about as many rows as columns, ``tile`` = (height, width) pixels."""
    font = font if font is not None else _font()
    (h, w), columns = tile, COLUMNS[keyed, attack]
    n, per = len(names), len(columns)
    samples_per_row = min(n, max(1, math.ceil(math.sqrt(n / per))))
    rows = math.ceil(n / samples_per_row)
    pitch_x, pitch_y = w + GAP, h + CAPTION + GAP
    tiles, captions = [], []
    for i, name in enumerate(names):
        r, g = divmod(i, samples_per_row)
        left, top = GAP + g * per * pitch_x, HEADER + r * pitch_y
        tiles += [(left + k * pitch_x, top) for k in range(per)]
        right = left + per * pitch_x - GAP
        captions.append(Label(text=fit(name, right - left - 2 * PAD, font), box=(left, top + h, right, top + h + CAPTION)))
    headers = []
    for q in range(samples_per_row * per):
        left = GAP + q * pitch_x
        headers.append(Label(text=fit(columns[q % per], w - 2 * PAD, font), box=(left, 0, left + w, HEADER)))
    return Layout(size=(samples_per_row * per * pitch_x + GAP, HEADER + rows * pitch_y), tiles=tiles, headers=headers, captions=captions)


def compose(tiles: np.ndarray, names: list[str], keyed: bool, attack: bool = False) -> tuple[Image.Image, Layout]:
    """The picture of ``tiles`` (N x H x W x C, the columns of each sample in turn, already
    enlarged) for samples of classes ``names``, and its layout."""
    font = _font()
    _, h, w, c = tiles.shape
    lay = layout(names, keyed, (h, w), font, attack)
    width, height = lay.size
    canvas = np.full((height, width, c), 255, np.uint8)
    for (left, top), t in zip(lay.tiles, tiles):
        canvas[top : top + h, left : left + w] = t
    picture = to_pil(canvas)
    draw = ImageDraw.Draw(picture)
    for label in lay.headers + lay.captions:
        left, top, _, _ = label.box
        draw.text((left + PAD, top + PAD), label.text, fill="black", font=font)
    return picture, lay


def preview(
    root: str | os.PathLike, output: str | os.PathLike, key: MasterKey | None = None, n: int = 16,
    split: str | None = None, dataset_id: str | None = None, attack: ShownAttack | None = None,
    progress: ProgressFactory = no_progress,
) -> tuple[int, list[str]]:  # fmt: skip
    """Writes the picture; returns the samples shown and warnings. ``attack``: also the learned
    attack's reconstructions (its training shows on ``progress``)."""
    keyed = open_keyed(root, key, dataset_id=dataset_id) if key is not None else None  # without the key: no decryptions to show
    ds = keyed.dataset if keyed is not None else open_dataset(root)
    m = ds.manifest
    cipher = keyed.cipher if keyed is not None else None
    refuse_plain_inside(output, ds.loc)  # even without the key: an unlisted file breaks verify
    split = split or ds.splits[0]
    batch = ds.split(split).head(n)
    plain = cipher.decrypt(batch.images, keyed.ring(split), batch.indices) if cipher is not None else None
    shown = {"encrypted": batch.images, "decrypted": plain, "plain": plain}
    if attack is not None:
        shown["learned attack"] = reconstruct(ds, split, batch, plain, keyed if cipher is not None else None, attack, progress)
    columns = COLUMNS[cipher is not None, attack is not None]
    # the columns of each sample side by side, sample after sample
    tiles = np.stack([shown[c] for c in columns], axis=1).reshape(-1, *m.shape)
    scale = max(1, math.ceil(MIN_TILE / max(m.height, m.width)))
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    picture, _ = compose(tiles, [m.classes[int(label)] for label in batch.labels], cipher is not None, attack is not None)
    with atomic_writer(output) as f:
        picture.save(f, format="PNG")
    return len(batch), keyed.warnings if keyed is not None else []
