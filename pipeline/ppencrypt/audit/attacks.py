"""The attacks the audit runs, and the registry that lists them.

An attack sees what an attacker would see: the ciphertexts, the manifest (method, parameters,
key scope, image shape — the server holds all of it), for known-plaintext attacks only the k
plain/encrypted pairs it is assumed to know, and for learned attacks only (``--learned``) the
attacker's own public images, which it may encrypt under keys of its own. It never sees the key
or the plain images it is scored on; the audit (audit.py) holds those and passes pairs only to
attacks that declare ``needs_pairs``. An attack returns its reconstructions and statistics that
describe what it found (counts, never key material).

Adding an attack: subclass :class:`Attack`, decorate it with :func:`register`, and import its
module in audit/__init__.py (this module never imports the attacks registered with it); the
audit, the table and report.png pick it up in registry order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np

from ..ciphers import ImageCipher, make_cipher
from ..errors import PipelineError
from ..registry import Registry
from .candidates import PixelCandidates, pixel_candidates
from .variants import Variants

ATTACKS: Registry[Attack] = Registry("attack", PipelineError)
register = ATTACKS.register


@dataclass(frozen=True)
class Target:
    """What the manifest tells anyone who holds the dataset."""

    method: str
    params: dict
    scope: str | None  # 'dataset' | 'image'; None for 'plain'
    shape: tuple[int, int, int]  # H, W, C

    @cached_property
    def cipher(self) -> ImageCipher:
        """The method as the manifest names it: public, like the method's definition."""
        return make_cipher(self.method, self.params)

    @cached_property
    def candidates(self) -> PixelCandidates | None:
        """Every encryption of one pixel, for a pixel-wise method; None otherwise."""
        return pixel_candidates(self.method, self.shape[2], self.params)


@dataclass(frozen=True)
class KnownPairs:
    plain: np.ndarray  # k x H x W x C
    cipher: np.ndarray  # k x H x W x C, the same images encrypted

    def __len__(self) -> int:
        return len(self.plain)


@dataclass
class Outcome:
    images: np.ndarray  # N x H x W x C uint8 reconstructions, in the order of the ciphertexts
    stats: dict = field(default_factory=dict)  # what the attack found, as counts and fractions
    # Some ciphertext-only attacks recover the images only up to one global transform (a colour
    # order and negation for the set under a shared key; a rotation, negation and colour order
    # per image for the jigsaw), which no statistic of the ciphertexts can settle but a viewer
    # settles by eye among the few variants. When set, the audit scores the variant a viewer
    # would pick (variants.py).
    variants: Variants | None = None


class Attack:
    name: ClassVar[str]
    summary: ClassVar[str]
    needs_pairs: ClassVar[bool] = False
    # A learned attack: run only with ``--learned``, and given the attacker's own public images
    # and training budget (public.Learner) as ``run(..., learner=...)``.
    needs_learner: ClassVar[bool] = False

    def not_applicable(self, target: Target) -> str | None:
        """Why this attack does not apply to ``target`` (shown in the table), or None."""
        return None

    def run(self, ciphertexts: np.ndarray, target: Target, pairs: KnownPairs | None = None) -> Outcome:
        raise NotImplementedError


def attacks() -> list[Attack]:
    """One instance of every registered attack, in registry order (the package, audit/__init__.py,
    imports the modules that register them)."""
    return [cls() for cls in ATTACKS.classes()]


@register
class Identity(Attack):
    name = "identity"
    summary = "the encrypted image itself: the floor every attack must beat"

    def run(self, ciphertexts, target, pairs=None):
        return Outcome(ciphertexts.copy())


@register
class FeatureReconstructionBasic(Attack):
    name = "fr-basic"
    summary = "feature reconstruction: v -> 255 - v where v > 127, per component"

    def run(self, ciphertexts, target, pairs=None):
        # Undoes every NP flip of a value that was below 128; leaves the colour order alone.
        return Outcome(np.where(ciphertexts > 127, 255 - ciphertexts, ciphertexts).astype(np.uint8))
