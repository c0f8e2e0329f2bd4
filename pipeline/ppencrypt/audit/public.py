"""The learned attacker's own images: public images of the same domain as the target's.

``--public SRC2`` names them; by default they are the other splits of SRC (for ``--split test``,
the training split) — images the attacker could plausibly hold, never the ones scored. That rule
is enforced by content too: a public image identical to a scored image or a known pair is
dropped (and counted), whatever folder it came from. The images are brought to the dataset's
shape as ``ppencrypt dataset --size`` would (OUT's own ``--size``, or, for a square dataset, its
side). Their labels train the recognition classifier when their class names are the dataset's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SourceError
from ..formats import Manifest
from ..progress import ProgressFactory, no_progress
from ..sources import open_source, read_head


@dataclass
class Budget:
    """What each learned model may spend (``--train-steps``, ``--train-seconds``, ``--seed``)."""

    steps: int  # optimiser steps per model
    seconds: float  # wall-clock limit per model: a run stopped by it is no longer reproducible
    seed: int


@dataclass
class PublicImages:
    images: np.ndarray  # n x H x W x C uint8
    labels: np.ndarray  # n int64
    same_classes: bool  # labelled with the dataset's classes: usable by the recognition classifier
    source: str
    splits: list[str]
    dropped: int  # identical to a scored image or a known pair, so not used

    def to_dict(self) -> dict:
        return {"source": self.source, "splits": self.splits, "images": len(self.images),
                "dropped_as_scored": self.dropped, "labels_used": self.same_classes}  # fmt: skip


@dataclass
class Learner:
    """What the learned attacks get besides the ciphertexts: the attacker's own images, what it
    may spend training on them, and where to show its progress."""

    public: PublicImages
    budget: Budget
    progress: ProgressFactory = no_progress
    cache: dict = field(default_factory=dict)  # models trained once per audit, shared by the attacks


def _open(path: str, m: Manifest):
    source = open_source(path, size=m.size)
    if source.shape != m.shape and source.shape[2] == m.channels and m.height == m.width:
        return _open_resized(path, m, source.shape)  # the attacker brings its images to the dataset's size
    if source.shape != m.shape:
        raise _mismatch(path, source.shape, m)
    return source


def _open_resized(path: str, m: Manifest, native: tuple[int, int, int]):
    source = open_source(path, size=m.height)
    if source.shape != m.shape:
        raise _mismatch(path, native, m)
    return source


def _mismatch(path: str, shape: tuple[int, int, int], m: Manifest) -> SourceError:
    (h, w, c), (dh, dw, dc) = shape, m.shape
    return SourceError(f"{path}: public images are {w}x{h}x{c}, the dataset's are {dw}x{dh}x{dc}")


def load_public(src: str, public: str | None, m: Manifest, split: str, scored: np.ndarray, limit: int) -> PublicImages:
    """Up to ``limit`` public images, in source order (split by split); ``scored`` holds every
    plain image the audit scores or gives as a known pair, none of which may be used."""
    source = _open(public or src, m)
    splits = [s for s in source.splits if public is not None or s != split]
    if not splits:
        raise SourceError(f"{src}: no split besides {split!r} to take the learned attacker's public images from: pass --public")
    images, labels = [], []
    for s in splits:
        if sum(len(x) for x in images) >= limit:
            break
        got = read_head(source.splits[s], limit - sum(len(x) for x in images))
        images.append(got[0])
        labels.append(got[1])
    images, labels = np.concatenate(images), np.concatenate(labels)
    seen = {im.tobytes() for im in scored}
    fresh = np.array([im.tobytes() not in seen for im in images], bool)
    if not fresh.any():
        raise SourceError(f"{public or src}: every public image is one of the images scored: the attacker needs others")
    return PublicImages(images[fresh], labels[fresh], source.classes == m.classes, public or src, splits, int((~fresh).sum()))
