"""``bsm``, block scramble-mix: block positions shuffled and every block transformed by a key
of its own (one of 8 rotations / flips, a negation per colour component, a colour order), meant
for a key per image (issue 25).

It is ``etc`` (block.py) with the negation made per component, as ``pe`` does it per pixel: the
NP transform acts on the block's input components, then the colour order moves them, so output
component c of a pixel in output block k is ``x[PERM[k_k][c]] ^ 255·r[k, PERM[k_k][c]]``. Under a
key per image nothing about a block survives but what its transform group leaves unchanged —
its content up to a dihedral symmetry, a sign per component and a colour order — and the
blocks' arrangement is gone; ``pptrain --adapt blockset`` (pptrain/blockset.py) is the network
that needs no more than that. The literature's direction: per-image patch shuffling with a
model that ignores patch positions (arXiv 2306.03679; ScrambleMix, PSIVT 2023).

What it does not hide: each block's content, up to those maps. The jigsaw attack (audit/jigsaw.py)
reassembles it per image by edge compatibility; docs/privacy.md measures how far.
"""

from __future__ import annotations

import math

import numpy as np

from ..keys.draws import Draw
from .base import PERMUTATIONS, log2_factorial, register
from .block import BlockCipher, scatter, symmetry_table


def block_maps(b: int, c: int, symmetry: np.ndarray, codes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """For every block's (symmetry, colour code): the input position of each output value in
    block order, and the input component it comes from, both (blocks, L)."""
    local = symmetry_table(b, c)[symmetry]
    lanes = np.broadcast_to(np.arange(local.shape[1]) % c, local.shape)
    if codes is None:
        return local, lanes
    component = PERMUTATIONS[codes][:, lanes[0]]
    return local - local % c + component, component


@register
class BSM(BlockCipher):
    name = "bsm"
    summary = "block scramble-mix: per image, block positions shuffled, each block rotated/flipped, negated per component, colour-shuffled"
    adapt = "blockset"  # block features invariant to the block's maps, then a set model without positions
    bag_of_blocks = True

    def purposes(self, channels):
        return ("block-positions", "block-symmetries", "block-np-bits") + (("block-colour-codes",) if channels == 3 else ())

    def key_space_bits(self, shape) -> float:
        """The block order, and per block one of 8 symmetries, C NP bits and (RGB) one of 6
        colour orders: log2(nb!) + nb·(3 + C + log2 6)."""
        nb, c = self.blocks(shape), shape[2]
        return log2_factorial(nb) + nb * (3 + c + (math.log2(6) if c == 3 else 0.0))

    def draws(self, shape):
        """The block permutation, a symmetry per block, C NP bits per block (bit k·C + c: block
        k, input component c) and, RGB, a colour code per block."""
        n, c = self.layout(shape)[0].shape[0], shape[2]
        colours = (Draw("block-colour-codes", "integers", n, 6),) if c == 3 else ()
        return (Draw("block-positions", "permutations", n, 1), Draw("block-symmetries", "integers", n, 8),
                Draw("block-np-bits", "bits", n * c), *colours)  # fmt: skip

    def keyed_transform(self, shape, keys):
        layout, c = self.layout(shape)
        positions, symmetry, bits = keys[0][0], keys[1], keys[2].reshape(-1, c)
        local, component = block_maps(self.block, c, symmetry, keys[3] if c == 3 else None)
        src = np.take_along_axis(layout[positions], local, axis=1)
        xor = np.take_along_axis(bits, component, axis=1).astype(np.uint8) * np.uint8(255)  # NP on the input component
        return scatter(layout, src, xor)
