"""The learned attack on the images a preview shows (``ppencrypt preview --attack``): what the
server could make of them, beside what it sees.

The attack is the audit's own ``learned`` inverter (learned.py), trained the way ``audit
--learned`` trains it: on the attacker's public images of the same domain, encrypted under
fresh keys of its own, never on the images shown. The public images are ``--public SRC2`` or,
with the key, the dataset's other splits decrypted — the images ``audit`` takes by default
(SRC's splits other than the one scored) — and any image identical to one shown is dropped.
The budget is small by default (a preview, not an audit): docs/privacy.md has the audited
numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OptionError, SourceError
from ..formats import Batch, Dataset
from ..keys import KeyedDataset
from ..progress import ProgressFactory, no_progress
from .attacks import Target
from .extra import require_torch
from .learned import LearnedInverter
from .public import Budget, Learner, PublicImages, load_public


@dataclass(frozen=True, kw_only=True)
class ShownAttack:
    public: str | None = None  # the attacker's images; None: the dataset's other splits, decrypted (needs the key)
    public_count: int = 5000
    train_steps: int = 300  # a preview's budget: about 20 s on 2 busy cores (the audit's default is 1,000)
    train_seconds: float = 180.0
    seed: int = 0


def target_of(ds: Dataset) -> Target:
    """The attack's target, refused where the learned attack does not apply (a usage error: the
    option does not fit this dataset)."""
    c = ds.manifest.cipher
    target = Target(c.method, dict(c.params), c.key_scope, ds.manifest.shape)
    reason = LearnedInverter().not_applicable(target)
    if reason:
        raise OptionError("--attack", f"{ds.loc.shown()}: method {c.method}: {reason}; the learned attack has nothing to reconstruct")
    return target


def _decrypted_public(keyed: KeyedDataset, split: str, limit: int) -> PublicImages:
    ds = keyed.dataset
    others = [s for s in ds.splits if s != split]
    if not others:
        raise SourceError(f"{ds.loc.shown()}: no split besides {split!r} to take the learned attacker's public images from: pass --public")
    images, labels = [], []
    for s in others:
        left = limit - sum(len(x) for x in images)
        if left <= 0:
            break
        batch = ds.split(s).head(left)
        images.append(keyed.cipher.decrypt(batch.images, keyed.ring(s), batch.indices))
        labels.append(batch.labels)
    return PublicImages(np.concatenate(images), np.concatenate(labels), True, ds.loc.shown(), others, 0)


def _without(public: PublicImages, shown: np.ndarray | None) -> PublicImages:
    """``public`` less any image identical to one shown."""
    if shown is None:
        return public
    seen = {im.tobytes() for im in shown}
    fresh = np.array([im.tobytes() not in seen for im in public.images], bool)
    if not fresh.any():
        raise SourceError(f"{public.source}: every public image is one of the images shown: the attacker needs others")
    return PublicImages(public.images[fresh], public.labels[fresh], public.same_classes, public.source, public.splits,
                        public.dropped + int((~fresh).sum()))  # fmt: skip


def reconstruct(ds: Dataset, split: str, batch: Batch, plain: np.ndarray | None, keyed: KeyedDataset | None, opts: ShownAttack,
                progress: ProgressFactory = no_progress) -> np.ndarray:  # fmt: skip
    """The learned attack's reconstructions of ``batch`` (the preview's samples of ``split``);
    ``plain``: their decryptions, with the key."""
    target = target_of(ds)
    if opts.public is None and keyed is None:
        raise OptionError("--attack", "the learned attacker needs public images: pass --public SRC2, or --key to use the dataset's "
                          "other splits, decrypted")  # fmt: skip
    require_torch("ppencrypt preview --attack")
    if opts.public is not None:
        none = np.empty((0, *ds.manifest.shape), np.uint8)
        public = load_public(opts.public, opts.public, ds.manifest, split, plain if plain is not None else none, opts.public_count)
    else:
        public = _without(_decrypted_public(keyed, split, opts.public_count), plain)
    learner = Learner(public, Budget(opts.train_steps, opts.train_seconds, opts.seed), progress)
    return LearnedInverter().run(batch.images, target, learner=learner).images
