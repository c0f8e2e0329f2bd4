"""``--adapt blockset``: the key-invariant network for block scramblers with a key per image
(``bsm``; ``etc`` too): block features that no block transform of the cipher changes, then a
set model over the blocks that never sees where a block is.

    N x C x H x W  -> blocks (nb of B x B x C)
                   -> per block, for each of the 8 rotations / flips g of the square and each
                      component c: |W·g(x_c) + b| folded as relu(a + b) + relu(-a + b)
                      (the same for x_c and -x_c: the NP transform of that component)
                   -> mean and max over the components (the same for every colour order)
                   -> a linear layer + ReLU, then the mean over the 8 g (the same for every
                      symmetry of the block): one embedding per block
                   -> mean and max over the blocks (the same for every order of the blocks),
                      LayerNorm, a linear layer
                   -> ADAPT_OUT features, spread over the (H/B) x (W/B) block grid

Every step is exactly invariant to its part of the cipher's key (up to float summation order),
so the network's output on a ciphertext is the output on its plain image: a key per image costs
nothing but what the invariance throws away — where the blocks are, and each block's
orientation, signs and colour order. The ResNet behind it sees a constant map (but for its
zero-padded borders) and serves as a deep head; its input grid is the block grid, 1/B² of the
pixels, so it costs little.

Invariant by construction, as ``--adapt invariant`` is for pixel-wise ciphers (model.py), rather
than learnt from examples; the symmetrisation over g is the usual group-averaging of invariant
networks, the set model Deep Sets' pooling. A transformer over the blocks without positional
encoding (2 pre-norm layers, as the permutation-equivariant ViT of arXiv 2306.03679) was tried
between the two: through pptrain's SGD recipe it reached 34 % training but 13 % test accuracy on
2,000 Fashion-MNIST images × 3 epochs, where pooling alone reached 40 % / 42 % at the same
speed (docs/privacy.md), so the pooling is what ships. At 10,000 × 2 with 7×7 blocks neither a
4× wider block embedding, mean-and-max over the 8 symmetries, a relation network over block
pairs nor one attention layer with dropout beat it by more than a point, and the last two fell
behind (experiments/blockset_variants.py; docs/privacy.md, "bsm: what was tried"): the bag of
blocks, not the network, limits the accuracy.
"""

from __future__ import annotations

import torch
from torch import nn

HIDDEN = 64  # block embedding width


def dihedral(blocks: torch.Tensor) -> torch.Tensor:
    """(..., B, B) -> (..., 8, B·B): the 8 symmetries of the square, as the cipher numbers them
    (rotate by 90° g mod 4 times, then mirror if g >= 4; the order does not matter here)."""
    out = []
    for g in range(8):
        t = torch.rot90(blocks, g % 4, dims=(-2, -1))
        out.append(torch.flip(t, dims=(-1,)) if g >= 4 else t)
    return torch.stack(out, dim=-3).flatten(-2)


class BlockSetAdaptation(nn.Module):
    def __init__(self, in_channels: int, block: int, out_channels: int):
        super().__init__()
        self.block = block
        self.embed = nn.Linear(block * block, HIDDEN)  # one component of a block, under one symmetry
        self.mix = nn.Sequential(nn.Linear(2 * HIDDEN, HIDDEN), nn.ReLU(inplace=True))
        self.norm = nn.LayerNorm(2 * HIDDEN)
        self.out = nn.Linear(2 * HIDDEN, out_channels)

    def block_features(self, x: torch.Tensor) -> torch.Tensor:
        """N x C x H x W -> N x nb x HIDDEN, invariant to every block's symmetry, per-component
        negation and colour order."""
        n, c, h, w = x.shape
        b = self.block
        blocks = x.reshape(n, c, h // b, b, w // b, b).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, c, b, b)
        a = nn.functional.linear(dihedral(blocks), self.embed.weight)  # N, nb, C, 8, HIDDEN
        folded = torch.relu(a + self.embed.bias) + torch.relu(self.embed.bias - a)  # even in a: the NP flip
        pooled = torch.cat([folded.mean(2), folded.amax(2)], dim=-1)  # over components: any colour order
        return self.mix(pooled).mean(2)  # over the 8 symmetries

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        tokens = self.block_features(x)  # N, nb, HIDDEN: no positions
        pooled = self.out(self.norm(torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1)))  # any order of the blocks
        return pooled[:, :, None, None].expand(-1, -1, h // self.block, w // self.block).contiguous()
