"""Variants of ``pptrain --adapt blockset`` (pptrain/blockset.py), trained through pptrain's own
recipe, for issue 25's search for a better ``bsm`` network (docs/privacy.md, "bsm: what was
tried"). A research harness, not a shipped option: each variant replaces the ``blockset``
entry of pptrain's adaptation registry inside this process, then runs the ``pptrain`` command
line unchanged, so the run directory, the recipe and the accuracy are pptrain's.

    OMP_NUM_THREADS=1 python -m experiments.blockset_variants VARIANT -- DATA --width 16 --epochs 2 --augment none \\
        --seed 0 --device cpu --run-dir RUN --quiet

Every variant keeps the exact key invariance of the shipped network (tests/test_trainer_blockset.py
checks the shipped one; ``check`` below checks each variant on random images and keys).
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from pptrain import model as pptrain_model
from pptrain.blockset import HIDDEN, BlockSetAdaptation, dihedral
from pptrain.cli import main as pptrain_main


class Wide(BlockSetAdaptation):
    """The block embedding 4 times as wide (256)."""

    def __init__(self, in_channels: int, block: int, out_channels: int, hidden: int = 4 * HIDDEN):
        nn.Module.__init__(self)
        self.block = block
        self.embed = nn.Linear(block * block, hidden)
        self.mix = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(inplace=True))
        self.norm = nn.LayerNorm(2 * hidden)
        self.out = nn.Linear(2 * hidden, out_channels)


class OrbitMax(BlockSetAdaptation):
    """Mean and max over the 8 symmetries (and a second layer), not the mean alone: a block's
    most telling orientation survives the pooling."""

    def __init__(self, in_channels: int, block: int, out_channels: int):
        super().__init__(in_channels, block, out_channels)
        self.mix2 = nn.Sequential(nn.Linear(2 * HIDDEN, HIDDEN), nn.ReLU(inplace=True))

    def block_features(self, x):
        n, c, h, w = x.shape
        b = self.block
        blocks = x.reshape(n, c, h // b, b, w // b, b).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, c, b, b)
        a = nn.functional.linear(dihedral(blocks), self.embed.weight)
        folded = torch.relu(a + self.embed.bias) + torch.relu(self.embed.bias - a)
        m = self.mix(torch.cat([folded.mean(2), folded.amax(2)], dim=-1))  # N, nb, 8, HIDDEN
        return self.mix2(torch.cat([m.mean(2), m.amax(2)], dim=-1))


class Relations(BlockSetAdaptation):
    """A relation network over the blocks (Santoro et al. 2017): an MLP of every ordered pair of
    block embeddings, summed — pairs, never positions; dropout against overfitting."""

    def __init__(self, in_channels: int, block: int, out_channels: int):
        super().__init__(in_channels, block, out_channels)
        self.pair = nn.Sequential(nn.Linear(2 * HIDDEN, HIDDEN), nn.ReLU(inplace=True), nn.Dropout(0.2), nn.Linear(HIDDEN, HIDDEN),
                                  nn.ReLU(inplace=True))  # fmt: skip
        self.out = nn.Linear(3 * HIDDEN, out_channels)
        self.norm = nn.LayerNorm(3 * HIDDEN)

    def forward(self, x):
        n, _, h, w = x.shape
        t = self.block_features(x)  # N, nb, HIDDEN
        k = t.shape[1]
        pairs = torch.cat([t[:, :, None].expand(-1, -1, k, -1), t[:, None].expand(-1, k, -1, -1)], dim=-1)
        rel = self.pair(pairs).mean((1, 2))
        pooled = self.out(self.norm(torch.cat([t.mean(1), t.amax(1), rel], dim=-1)))
        return pooled[:, :, None, None].expand(-1, -1, h // self.block, w // self.block).contiguous()


class Attention(BlockSetAdaptation):
    """One pre-norm self-attention layer over the blocks, no positional encoding, dropout 0.2,
    then the shipped pooling: equivariant to the order of the blocks, so the pooled output is
    invariant."""

    def __init__(self, in_channels: int, block: int, out_channels: int):
        super().__init__(in_channels, block, out_channels)
        self.layer = nn.TransformerEncoderLayer(HIDDEN, 4, 2 * HIDDEN, dropout=0.2, batch_first=True, norm_first=True)

    def block_features(self, x):
        return self.layer(super().block_features(x))


VARIANTS = {"shipped": BlockSetAdaptation, "wide": Wide, "orbit-max": OrbitMax, "relations": Relations, "attention": Attention}


def check(variant: str) -> float:
    """The largest output difference between 4 random grey images and the same images with
    their blocks permuted, each block rotated and negated: ~1e-6 for an invariant variant."""
    torch.manual_seed(0)
    net = VARIANTS[variant](1, 7, 8).eval()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    blocks = x.reshape(4, 1, 4, 7, 4, 7).permute(0, 2, 4, 1, 3, 5).reshape(4, 16, 1, 7, 7)
    moved = torch.rot90(blocks[:, torch.randperm(16)], 1, dims=(-2, -1)) * -1
    y = moved.reshape(4, 4, 4, 1, 7, 7).permute(0, 3, 1, 4, 2, 5).reshape(4, 1, 28, 28)
    with torch.no_grad():
        return float((net(x) - net(y)).abs().max())


def main(argv: list[str]) -> None:
    variant, rest = argv[0], argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if variant not in VARIANTS:
        raise SystemExit(f"no variant {variant!r} (variants: {', '.join(VARIANTS)})")
    print(f"{variant}: invariance check, max |f(x) - f(key(x))| = {check(variant):.2e}", file=sys.stderr)
    cls = VARIANTS[variant]
    pptrain_model.ADAPTATIONS["blockset"] = lambda channels, block, group: cls(channels, block, pptrain_model.ADAPT_OUT)
    pptrain_main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
