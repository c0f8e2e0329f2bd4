"""Cipher methods. Importing this package registers every built-in method."""

from . import block, pixel  # noqa: F401  (registering pe, np, plain, le, ele, etc)
from .base import ImageCipher, cipher_class, make_cipher, method_names, register
from .pixel import CODE_NAMES, PERMUTATIONS, PixelKey
from .transform import GatherXor

__all__ = [
    "CODE_NAMES",
    "GatherXor",
    "ImageCipher",
    "PERMUTATIONS",
    "PixelKey",
    "cipher_class",
    "make_cipher",
    "method_names",
    "register",
]
