"""Cipher methods. Importing this package registers every built-in method."""

from . import block, pixel, scramble  # noqa: F401  (registering pe, np, plain, le, ele, etc, bsm)
from .base import METHODS, PERMUTATIONS, ImageCipher, PixelGroup, cipher_class, make_cipher, method_names, register
from .pixel import CODE_NAMES, PixelKey
from .transform import GatherXor

__all__ = [
    "CODE_NAMES",
    "METHODS",
    "PixelGroup",
    "GatherXor",
    "ImageCipher",
    "PERMUTATIONS",
    "PixelKey",
    "cipher_class",
    "make_cipher",
    "method_names",
    "register",
]
