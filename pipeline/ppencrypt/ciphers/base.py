"""The cipher interface, the facts every method states about itself, and the registry.

A method is a subclass of :class:`ImageCipher` decorated with :func:`register`. Everything
else learns what a method is from the class, never from its name:

* ``family`` — ``pixel``: every pixel is encrypted on its own with the key of its position, so
  shifts and flips of the ciphertext commute with the cipher ([P]); ``block``: the key acts on
  B×B blocks, so a shift off the block grid breaks the encryption; ``none``: no encryption.
* ``adapt`` — the adaptation network (``pptrain --adapt``) that fits the ciphertext.
* :meth:`ImageCipher.key_space_bits` — log2 of the masks one key selects among.
* :meth:`ImageCipher.pixel_group` — for pixel-wise methods, every map the cipher may apply to
  one pixel: what a ciphertext pixel can be, given its plain value (docs/paper.md).

The manifest records ``family``, ``adapt``, the block side and the group's name
(:meth:`ImageCipher.facts`), so the server reads fields instead of importing this code.
Adding a method touches its own module and the registry line that imports it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import CipherError
from ..keys.derive import SCOPES, KeyRing
from ..keys.draws import Draw
from ..registry import Registry

# Code k sends output component c to input component PERMUTATIONS[k][c] ([P]'s numbering).
PERMUTATIONS = np.array([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]], dtype=np.int32)

METHODS: Registry[ImageCipher] = Registry("method", CipherError)
register = METHODS.register


def method_names() -> list[str]:
    return METHODS.names()


def cipher_class(name: str) -> type[ImageCipher]:
    return METHODS.get(name)


def make_cipher(name: str, params: dict | None = None) -> ImageCipher:
    """Build a method from its name and parameters (as recorded in a manifest)."""
    cls = cipher_class(name)
    params = dict(params or {})
    unknown = set(params) - set(cls.defaults)
    if unknown:
        raise CipherError(f"method {name!r} takes no parameter {', '.join(sorted(unknown))}")
    for key, value in params.items():  # a manifest's params may come from anywhere: their types must be the defaults'
        kind = type(cls.defaults[key])
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise CipherError(f"method {name!r}: parameter {key} must be of type {kind.__name__}")
    return cls(**{**cls.defaults, **params})


def log2_factorial(n: int) -> float:
    return math.lgamma(n + 1) / math.log(2)


@dataclass(frozen=True)
class PixelGroup:
    """The maps a pixel-wise cipher may apply to one pixel of C components. Element t sends
    plain pixel x to ``y[c] = x[perms[t][c]] ^ 255·flips[t][perms[t][c]]``: first the NP
    transform negates the components where ``flips[t]`` is 1, then the colour order
    ``perms[t]`` moves them. Under a key drawn uniformly, a ciphertext pixel is uniformly one of
    the images of its plain pixel under these maps."""

    perms: np.ndarray  # (T, C) int: output component c comes from input component perms[t][c]
    flips: np.ndarray  # (T, C) 0/1, per input component

    def __len__(self) -> int:
        return len(self.perms)

    @property
    def kind(self) -> str:
        """``identity`` (no map), ``negations`` (every subset of components negated, order kept),
        ``signed-permutations`` (every colour order of every negation), else ``other``. The
        manifest records it: under a key per image, what a model can learn of a pixel is what
        the group leaves unchanged (|x − 127.5| per component, and sorted for signed-permutations)."""
        c = self.perms.shape[1]
        elements = set(zip(map(tuple, self.perms.tolist()), map(tuple, self.flips.tolist())))
        for kind, negates, permutes in (("identity", False, False), ("negations", True, False), ("signed-permutations", True, True)):
            if permutes and c != 3:
                continue
            full = PixelGroup.generated(c, negates, permutes)
            if len(elements) == len(self) and elements == set(zip(map(tuple, full.perms.tolist()), map(tuple, full.flips.tolist()))):
                return kind
        return "other"

    @staticmethod
    def generated(channels: int, negates: bool, permutes: bool) -> PixelGroup:
        """All colour orders (when ``permutes``; [P]'s code order) times all negations (when
        ``negates``; f in binary, component 0 least significant): code-major."""
        identity = np.arange(channels)
        perms, flips = [], []
        for perm in PERMUTATIONS if permutes else (identity,):
            for f in range(2**channels if negates else 1):
                perms.append(perm)
                flips.append((f >> identity) & 1)
        return PixelGroup(np.array(perms, np.int64), np.array(flips, np.uint8))


class ImageCipher(ABC):
    """Encrypts batches of N x H x W x C uint8 images.

    ``indices`` are the images' positions in their split (or 12-byte nonces for query images);
    image-scope keys depend on them, dataset-scope keys do not.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    family: ClassVar[str]  # 'pixel' | 'block' | 'none' (ppencrypt.formats.manifest.FAMILIES)
    adapt: ClassVar[str] = "pixel"  # the adaptation network that fits the ciphertext (pptrain --adapt)
    # True where, under any key, the ciphertext is the plain image's blocks moved, each by a
    # rotation / flip, a sign per component and a colour order: the maps that blockset's block
    # features ignore, so they are the plain image's — for the server, and for the audit's
    # learned-features attacker (tests/test_audit_features.py checks every registered method)
    bag_of_blocks: ClassVar[bool] = False
    needs_key: ClassVar[bool] = True
    scopes: ClassVar[tuple[str, ...]] = SCOPES
    defaults: ClassVar[dict] = {}

    def __init__(self, **params):
        self._params = params

    @property
    def params(self) -> dict:
        return dict(self._params)

    @property
    def block(self) -> int | None:
        """The side of the blocks the key acts on, for block-wise methods."""
        return None

    def purposes(self, channels: int) -> tuple[str, ...]:
        """The derivation purposes this method uses for images with ``channels`` channels."""
        return ()

    def draws(self, shape: tuple[int, int, int]) -> tuple[Draw, ...] | None:
        """What the key of one image of ``shape`` is made of (keys/draws.py), in the order a
        version 3 record holds them; None for a method that reads keystreams by purpose
        itself (KeyRing.stream), which every key derivation still serves."""
        return None

    @abstractmethod
    def key_space_bits(self, shape: tuple[int, int, int]) -> float:
        """log2 of the number of masks one key selects among, for H x W x C images."""

    def pixel_group(self, channels: int) -> PixelGroup | None:
        """The maps one pixel may undergo (pixel-wise methods); None where a pixel's ciphertext
        depends on more than its own value."""
        return None

    def facts(self, channels: int) -> dict:
        """What the manifest's cipher section records about the method (docs/formats.md)."""
        group = self.pixel_group(channels)
        return {"family": self.family, "adapt": self.adapt, "block": self.block, "pixel_group": None if group is None else group.kind}

    def check(self, shape: tuple[int, int, int], scope: str | None) -> None:
        """Raise CipherError if this method cannot encrypt images of ``shape`` under ``scope``."""
        if self.needs_key and scope not in self.scopes:
            raise CipherError(f"method {self.name!r} supports key scope {' or '.join(self.scopes)}, not {scope!r}")

    def encrypt(self, images: np.ndarray, ring: KeyRing | None, indices) -> np.ndarray:
        return self.apply(images, self._bound(ring, images.shape[1:]), indices, inverse=False)

    def decrypt(self, images: np.ndarray, ring: KeyRing | None, indices) -> np.ndarray:
        return self.apply(images, self._bound(ring, images.shape[1:]), indices, inverse=True)

    def _bound(self, ring: KeyRing | None, shape) -> KeyRing | None:
        """The ring for these images: their shape and this method's parameters are part of
        every derivation label (keys/derive.py), so a mask is never reused across either."""
        return None if ring is None else ring.bind(shape, self.params)

    @abstractmethod
    def apply(self, images: np.ndarray, ring: KeyRing | None, indices, inverse: bool) -> np.ndarray:
        """Encrypt (or, with ``inverse``, decrypt) N x H x W x C ``images`` under a bound ring."""
