"""Block-wise baselines of [P]'s Table 2: Tanaka's LE, EtC block scrambling, and ELE.

Each is a :class:`GatherXor` over the whole image — the block structure lives only in how
``src`` and ``xor`` are built — so they share encryption, decryption, batching and caching
with the pixel methods. LE and ELE work on nibbles: every 8-bit value is split into its upper
and lower 4 bits, giving an H x W x 2C image (upper nibbles of the C components, then the
lower ones), which is encrypted and merged back.

Blocks are B x B (``--block-size``, default 4), numbered row-major; inside a block, values are
numbered row-major over (row, column, component). Definitions follow docs/paper.md ("Baselines").
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import CipherError
from ..keys.draws import Draw
from .base import PERMUTATIONS, log2_factorial, register
from .pixel import GatherXorCipher
from .transform import GatherXor


def block_layout(h: int, w: int, c: int, b: int) -> np.ndarray:
    """(blocks, b*b*c) flat image indices: row k lists block k's values in block order."""
    flat = np.arange(h * w * c, dtype=np.int64).reshape(h // b, b, w // b, b, c)
    return flat.transpose(0, 2, 1, 3, 4).reshape((h // b) * (w // b), b * b * c)


def symmetry_table(b: int, c: int) -> np.ndarray:
    """(8, b*b*c): for each of the 8 symmetries of a square (code g: rotate by 90 degrees g mod 4
    times, then mirror left-right if g >= 4), the block position each output value takes."""
    grid = np.arange(b * b).reshape(b, b)
    tables = []
    for g in range(8):
        t = np.rot90(grid, g % 4)
        t = np.fliplr(t) if g >= 4 else t
        tables.append((t.reshape(-1, 1) * c + np.arange(c)).reshape(-1))
    return np.stack(tables)


def split_nibbles(images: np.ndarray) -> np.ndarray:
    return np.concatenate([images >> 4, images & 0x0F], axis=-1)


def merge_nibbles(nibbles: np.ndarray) -> np.ndarray:
    c = nibbles.shape[-1] // 2
    return (nibbles[..., :c] << 4) | nibbles[..., c:]


class BlockCipher(GatherXorCipher):
    family = "block"
    adapt = "tanaka"  # one output of its first layer sees exactly one cipher block
    defaults = {"block_size": 4}
    nibbles = False  # LE and ELE work on 4-bit halves

    @property
    def block(self) -> int:
        return int(self._params["block_size"])

    def check(self, shape, scope) -> None:
        super().check(shape, scope)
        h, w, _ = shape
        if self.block < 1 or h % self.block or w % self.block:
            raise CipherError(
                f"method {self.name!r}: image size {w}x{h} is not divisible by the block size {self.block}; "
                "pass --block-size that divides both sides, or --size N with N a multiple of it"
            )

    def blocks(self, shape) -> int:
        h, w, _ = shape
        return (h // self.block) * (w // self.block)

    def layout(self, shape) -> tuple[np.ndarray, int]:
        """``shape`` is that of the array the gather runs on: for LE/ELE the nibble image."""
        h, w, c = shape
        return block_layout(h, w, c, self.block), c

    def build(self, ring, shape, indices):
        schedule = self.draws(shape)
        if schedule is None:  # a method that reads its keystreams itself (image_transform)
            parts = [self.image_transform(ring, shape, i) for i in ([None] if indices is None else indices)]
        else:  # every image's key in one call (a version 3 ring: one ChaCha20 call)
            drawn = ring.draws(schedule, indices)
            parts = [self.keyed_transform(shape, [d[i] for d in drawn]) for i in range(len(drawn[0]))]
        if indices is None:
            return parts[0]
        moves = any(p.src is not None for p in parts)  # a method may only flip values (no gather)
        src = np.stack([p.src if p.src is not None else np.arange(p.xor.size) for p in parts]) if moves else None
        return GatherXor(src, np.stack([p.xor for p in parts]))

    def image_transform(self, ring, shape, index) -> GatherXor:
        """The transform of one image (``index`` None: the shared one), as flat gather + xor."""
        drawn = ring.draws(self.draws(shape), None if index is None else [index])
        return self.keyed_transform(shape, [d[0] for d in drawn])

    def keyed_transform(self, shape, keys: list[np.ndarray]) -> GatherXor:
        """The transform of one image from its key: one array per draw of :meth:`draws`."""
        raise NotImplementedError

    def apply(self, images, ring, indices, inverse):
        if not self.nibbles:
            return super().apply(images, ring, indices, inverse)
        return merge_nibbles(super().apply(split_nibbles(images), ring, indices, inverse))


def learnable(layout: np.ndarray, perms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tanaka's step on every block: invert where the key value exceeds half, permute, invert
    again. ``perms`` is (blocks, L) or (1, L) for one key shared by all blocks; the key value of
    position q is perms[q] + 1, so position q is inverted when perms[q] >= L / 2.
    Returns src and xor (as 0/15) in block layout: y[q] = x[perm[q]] ^ 15 (m[perm[q]] ^ m[q])."""
    perms = np.broadcast_to(perms, layout.shape)
    invert = perms >= layout.shape[1] // 2
    src = np.take_along_axis(layout, perms, axis=1)
    flips = np.take_along_axis(invert, perms, axis=1) ^ invert
    return src, flips.astype(np.uint8) * np.uint8(15)


def scatter(layout: np.ndarray, src: np.ndarray, xor: np.ndarray) -> GatherXor:
    """Block-layout src/xor -> flat image order."""
    flat_src = np.empty(layout.size, np.int64)
    flat_xor = np.empty(layout.size, np.uint8)
    flat_src[layout.reshape(-1)] = src.reshape(-1)
    flat_xor[layout.reshape(-1)] = xor.reshape(-1)
    return GatherXor(flat_src, flat_xor)


@register
class LE(BlockCipher):
    name = "le"
    summary = "Tanaka's learnable encryption: one keyed nibble permutation + inversion shared by all BxB blocks"
    nibbles = True

    def purposes(self, channels):
        return ("block-permutation",)

    def key_space_bits(self, shape) -> float:
        """One permutation of the L = 2·B²·C nibble positions of a block; the inversion mask
        follows from it: log2(L!) (log2 96! ≈ 500 bits for 4×4 RGB)."""
        return log2_factorial(2 * self.block**2 * shape[2])

    def draws(self, shape):
        layout, _ = self.layout(shape)
        return (Draw("block-permutation", "permutations", layout.shape[1], 1),)

    def keyed_transform(self, shape, keys):
        layout, _ = self.layout(shape)
        return scatter(layout, *learnable(layout, keys[0]))


@register
class ELE(BlockCipher):
    name = "ele"
    summary = "extended LE (Madono et al.): LE with a different key per block, then block-position shuffle"
    nibbles = True

    def purposes(self, channels):
        return ("block-permutations", "block-positions")

    def key_space_bits(self, shape) -> float:
        """A nibble permutation per block and one permutation of the nb blocks:
        nb·log2(L!) + log2(nb!)."""
        nb = self.blocks(shape)
        return nb * log2_factorial(2 * self.block**2 * shape[2]) + log2_factorial(nb)

    def draws(self, shape):
        n, length = self.layout(shape)[0].shape
        return (Draw("block-permutations", "permutations", length, n), Draw("block-positions", "permutations", n, 1))

    def keyed_transform(self, shape, keys):
        layout, _ = self.layout(shape)
        perms, positions = keys[0], keys[1][0]
        src, xor = learnable(layout, perms)
        # output block k is input block positions[k], already LE-encrypted with its own key
        return scatter(layout, src[positions], xor[positions])


@register
class ETC(BlockCipher):
    name = "etc"
    summary = "EtC block scrambling: keyed block positions, rotation/flip, block NP and block colour shuffle"
    bag_of_blocks = True  # one NP bit for a whole block is a sign per component, all equal

    def purposes(self, channels):
        return ("block-positions", "block-symmetries", "block-np-bits") + (("block-colour-codes",) if channels == 3 else ())

    def key_space_bits(self, shape) -> float:
        """The block order, and per block one of 8 symmetries, an NP bit and (RGB) one of 6
        colour orders: log2(nb!) + nb·(3 + 1 + log2 6)."""
        nb = self.blocks(shape)
        return log2_factorial(nb) + nb * (3 + 1 + (math.log2(6) if shape[2] == 3 else 0.0))

    def draws(self, shape):
        n = self.layout(shape)[0].shape[0]
        colours = (Draw("block-colour-codes", "integers", n, 6),) if shape[2] == 3 else ()
        return (Draw("block-positions", "permutations", n, 1), Draw("block-symmetries", "integers", n, 8),
                Draw("block-np-bits", "bits", n), *colours)  # fmt: skip

    def keyed_transform(self, shape, keys):
        layout, c = self.layout(shape)
        positions, symmetry, negate = keys[0][0], keys[1], keys[2]
        local = symmetry_table(self.block, c)[symmetry]  # (blocks, L): rotated/flipped positions
        if c == 3:
            codes = keys[3]
            local = local - local % 3 + PERMUTATIONS[codes][:, np.arange(local.shape[1]) % 3]
        src = np.take_along_axis(layout[positions], local, axis=1)
        xor = np.repeat(negate.astype(np.uint8) * np.uint8(255), layout.shape[1]).reshape(layout.shape)
        return scatter(layout, src, xor)
